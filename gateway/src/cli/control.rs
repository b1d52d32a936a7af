//! `gateway push` and `gateway stats`: the control API (docs/PUSH.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::http::{Answer, call};
use super::{CliError, DEFAULT_CONTROL, parse_addr};

/// Where the control API is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// Control listener of the gateway.
    #[arg(long, default_value = DEFAULT_CONTROL, value_parser = parse_addr)]
    pub control: SocketAddr,
    /// Bearer token of the control API (`listen.control_token`).
    #[arg(long, env = "GATEWAY_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long to wait for the answer, seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// Arguments of `gateway push`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("to").required(true).args(["user", "topic", "all"]))]
pub struct PushArgs {
    /// Push to this user's sessions.
    #[arg(long)]
    pub user: Option<String>,
    /// Push to this topic's subscribers.
    #[arg(long)]
    pub topic: Option<String>,
    /// Push to every session.
    #[arg(long)]
    pub all: bool,
    /// Only sessions that declared this app get it.
    #[arg(long)]
    pub app: Option<String>,
    /// A durable push: clients must ack it (the answer comes once it is stored).
    #[arg(long)]
    pub ack: bool,
    /// The control API.
    #[command(flatten)]
    pub control: ControlArgs,
    /// The payload (UTF-8 text).
    pub payload: String,
}

/// Arguments of `gateway stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The control API.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// The `POST /v1/push` body for `args`.
pub fn push_body(args: &PushArgs) -> Value {
    let to = match (&args.user, &args.topic) {
        (Some(u), _) => json!({ "user": u }),
        (None, Some(t)) => json!({ "topic": t }),
        (None, None) => json!({ "all": true }),
    };
    let mut body = json!({ "to": to, "payload": args.payload, "ack": args.ack });
    if let (Some(app), Some(obj)) = (&args.app, body.as_object_mut()) {
        obj.insert("app".into(), json!(app));
    }
    body
}

/// Sends one request and fails on a non-2xx answer.
fn request(c: &ControlArgs, method: &str, path: &str, body: &str) -> Result<Answer, CliError> {
    let timeout = Duration::from_secs(c.timeout_secs.max(1));
    let answer = call(c.control, method, path, c.token.as_deref(), body, timeout)?;
    if !(200..300).contains(&answer.status) {
        return Err(CliError::Http {
            status: answer.status,
            body: answer.body.trim().to_string(),
        });
    }
    Ok(answer)
}

/// Runs `gateway push`: prints the answer (`{"id": N, "online": K}`).
pub fn push(args: &PushArgs) -> Result<(), CliError> {
    let answer = request(
        &args.control,
        "POST",
        "/v1/push",
        &push_body(args).to_string(),
    )?;
    println!("{}", answer.body.trim());
    Ok(())
}

/// Runs `gateway stats`: prints the counters, pretty when they are JSON.
pub fn stats(args: &StatsArgs) -> Result<(), CliError> {
    let answer = request(&args.control, "GET", "/v1/stats", "")?;
    match serde_json::from_str::<Value>(&answer.body) {
        Ok(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or(answer.body)
        ),
        Err(_) => println!("{}", answer.body.trim()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(user: Option<&str>, topic: Option<&str>, all: bool) -> PushArgs {
        PushArgs {
            user: user.map(Into::into),
            topic: topic.map(Into::into),
            all,
            app: None,
            ack: false,
            control: ControlArgs {
                control: DEFAULT_CONTROL.parse().unwrap(),
                token: None,
                timeout_secs: 1,
            },
            payload: "hello".into(),
        }
    }

    #[test]
    fn bodies_follow_the_push_api() {
        assert_eq!(
            push_body(&args(Some("alice"), None, false)),
            json!({"to": {"user": "alice"}, "payload": "hello", "ack": false})
        );
        assert_eq!(
            push_body(&args(None, Some("news"), false))["to"],
            json!({"topic": "news"})
        );
        let mut a = args(None, None, true);
        a.app = Some("chat".into());
        a.ack = true;
        assert_eq!(
            push_body(&a),
            json!({"to": {"all": true}, "payload": "hello", "ack": true, "app": "chat"})
        );
    }
}
