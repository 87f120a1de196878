//! Scrapes of `GET /metrics`: the Prometheus text format read back into numbers, so a test can
//! say by how much a counter moved. Shared by the test files that check metrics.

use std::collections::HashMap;
use std::time::Duration;

use super::TestServer;

/// How long [`scrape_until`] waits for what it looks for.
const SCRAPE_WAIT: Duration = Duration::from_secs(15);

/// One scrape: every sample by its name and sorted labels.
#[derive(Debug)]
pub struct Scrape {
    samples: HashMap<String, f64>,
    /// The page as served, for a failure's message.
    pub text: String,
}

impl Scrape {
    /// Parses the text format: `name{label="value",...} number` lines, comments skipped.
    pub fn parse(text: &str) -> Scrape {
        let mut samples = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample: series and value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels end with }");
                    let mut labels: Vec<(String, String)> = split_labels(rest);
                    labels.sort();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            let key = key(
                &name,
                &labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
            );
            assert!(
                samples.insert(key, value).is_none(),
                "one sample per series: {line}"
            );
        }
        Scrape {
            samples,
            text: text.to_owned(),
        }
    }

    /// The sample of `name` with exactly `labels` (0 when absent: a counter not yet moved).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// Whether a sample of `name` with exactly `labels` is on the page.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.contains_key(&key(name, labels))
    }

    /// How far `name{labels}` moved since `before`.
    pub fn delta(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels) - before.get(name, labels)
    }
}

/// `a="x",b="y"` into pairs (values hold no quotes or commas here: templates, names, numbers).
fn split_labels(text: &str) -> Vec<(String, String)> {
    text.split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once("=\"").expect("label=\"value\"");
            (name.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

pub async fn scrape_url(url: &str) -> Scrape {
    let response = reqwest::get(url).await.expect("scrape");
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text().await.expect("page"))
}

pub async fn scrape(server: &TestServer) -> Scrape {
    scrape_url(&server.url("/metrics")).await
}

/// Scrapes until `done` holds, or fails with the last page.
pub async fn scrape_until(
    server: &TestServer,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + SCRAPE_WAIT;
    loop {
        let page = scrape(server).await;
        if done(&page) {
            return page;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} never showed:\n{}", page.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
