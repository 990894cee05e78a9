//! Alert sinks the service offers: a webhook that POSTs each alert as JSON.

use std::time::Duration;

use async_trait::async_trait;
use stagehand_actors::{Alert, AlertSink};

/// POSTs each alert as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    /// The URL without credentials or query, safe for logs.
    shown: String,
}

impl WebhookSink {
    /// A sink posting to `url`, each delivery bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let shown = reqwest::Url::parse(url)
            .map(|u| {
                format!(
                    "{}://{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.path()
                )
            })
            .unwrap_or_else(|_| "<invalid url>".into());
        Ok(WebhookSink {
            client,
            url: url.to_string(),
            shown,
        })
    }
}

#[async_trait]
impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        &self.shown
    }

    async fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .json(alert)
            .send()
            .await
            .map_err(|e| format!("webhook {} unreachable: {}", self.shown, e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "webhook {} answered {}",
                self.shown,
                response.status()
            ))
        }
    }
}
