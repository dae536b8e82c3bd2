//! Credentials, checked once at start: a daemon without them used to run on, logging a raw
//! ~1,100-character chain of provider errors (the IMDS one included) per pool per tick.
//!
//! [`check`] asks the clients' credential chain (environment, profile, web identity, container,
//! IMDS) for credentials a bounded number of times with backoff (an instance role can take a
//! moment after boot); without success the caller stops with one clear line. [`shorten`] turns
//! the SDK's chain dump in a later evaluation error (credentials that expired and could not be
//! refreshed) into one line.
//!
//! Not here: choosing the chain (aws-config's default chain, with the config's profile).

use std::time::Duration;

use aws_sdk_ec2::config::ProvideCredentials;

use super::Aws;

/// The start-up error's first words (tests and operators grep for it).
pub const NO_CREDENTIALS: &str = "no AWS credentials";

const CHECKED: &str = "checked environment, profile, web identity, container and IMDS";

/// Gets credentials from the chain, `attempts` times at most (1 s, 2 s, 4 s... apart, each try
/// at most 10 s). `Err` is the one line to print.
pub async fn check(aws: &Aws, attempts: u32) -> Result<(), String> {
    let Some(provider) = aws.credentials.clone() else {
        return Err(format!("{NO_CREDENTIALS}: no credential provider is configured"));
    };
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                let line = first_line(&e.to_string());
                // The chain reports its last provider's words ("not enabled"), not the chain's.
                last = if line.contains("not enabled") { "none of them had credentials".to_owned() } else { line };
            }
            Err(_) => last = "the credential chain did not answer within 10 s".to_owned(),
        }
        if attempt < attempts {
            tracing::debug!(attempt, error = %last, "no AWS credentials yet: retrying");
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(5))).await;
        }
    }
    Err(format!(
        "{NO_CREDENTIALS}: {CHECKED} ({} attempt(s): {last}); on EC2 attach an instance profile with the policy \
         from `vmscaler iam-policy`, elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        attempts.max(1)
    ))
}

/// One line of at most 160 characters.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// An evaluation error that is the SDK's credential-chain dump, as one short line.
pub fn shorten(msg: String) -> String {
    if msg.contains("no credentials found in chain") || msg.contains("failed to load credentials") {
        let what = msg.split(": ").next().unwrap_or("AWS call");
        format!("{what}: {NO_CREDENTIALS} ({CHECKED}; the credentials may have expired without a refresh)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_dump_becomes_one_line() {
        let dump = "cannot read the fleet: DescribeInstances failed: dispatch failure: other: the credential provider \
                    was not enabled: no credentials found in chain. Attempted:\n  Environment: ...\n  IMDS: ..."
            .to_owned();
        let short = shorten(dump);
        assert!(!short.contains('\n') && short.starts_with("cannot read the fleet: no AWS credentials"), "{short}");
        assert_eq!(shorten("throttled".to_owned()), "throttled");
    }
}
