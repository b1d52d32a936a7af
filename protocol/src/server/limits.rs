//! What a client may send, checked before any of it is kept or handed on:
//! the `[protocol]` limits on a Hello's apps and device label and on topic
//! names. Over a limit the session answers `Error` and closes.

use super::config::ServerConfig;
use crate::proto::{ErrorCode, Hello};

/// What in `hello` exceeds the configured limits, if anything. Checked
/// before the gateway interns or forwards any of it, so no client input
/// larger than these limits is kept for the session's life.
pub(super) fn hello_over_limits(hello: &Hello, cfg: &ServerConfig) -> Option<String> {
    if hello.apps.len() > cfg.max_apps as usize {
        return Some(format!(
            "{} apps in Hello; the limit is {}",
            hello.apps.len(),
            cfg.max_apps
        ));
    }
    if let Some(app) = hello
        .apps
        .iter()
        .find(|a| a.len() > cfg.max_app_len as usize)
    {
        return Some(format!(
            "app name of {} bytes; the limit is {}",
            app.len(),
            cfg.max_app_len
        ));
    }
    if hello.device.len() > cfg.max_device_len as usize {
        return Some(format!(
            "device label of {} bytes; the limit is {}",
            hello.device.len(),
            cfg.max_device_len
        ));
    }
    None
}

/// What in `topics` breaks the topic-name rules, with the code to answer:
/// an empty name is BAD_FRAME, one over `max_topic_len` LIMIT_EXCEEDED.
pub(super) fn topic_names_over_limits(
    topics: &[String],
    cfg: &ServerConfig,
) -> Option<(ErrorCode, String)> {
    if topics.iter().any(String::is_empty) {
        return Some((ErrorCode::BadFrame, "empty topic name".into()));
    }
    let long = topics
        .iter()
        .find(|t| t.len() > cfg.max_topic_len as usize)?;
    Some((
        ErrorCode::LimitExceeded,
        format!(
            "topic name of {} bytes; the limit is {}",
            long.len(),
            cfg.max_topic_len
        ),
    ))
}
