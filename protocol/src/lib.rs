//! Sans-IO wire protocol v1 of the gateway (placeholder: being written).
