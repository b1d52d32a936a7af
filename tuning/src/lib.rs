//! Host checks, tuning plans and per-core config derivation.
