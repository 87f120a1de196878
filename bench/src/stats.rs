//! Counters and latency histograms (hdrhistogram, in microseconds), mergeable across the shares of
//! a run and sent from a child process to its parent as one line of JSON.

use std::collections::BTreeMap;

use anyhow::Context;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde_json::{Map, Value};

/// Highest latency recorded: one hour, in microseconds; anything slower is clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A new latency histogram: 1 µs to one hour, three significant figures.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a programming error.
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records `micros` (clamped to the histogram's range).
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// What one share of a run measured.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

impl Stats {
    pub fn add(&mut self, key: &str, n: u64) {
        *self.counters.entry(key.to_owned()).or_default() += n;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    pub fn histogram(&self, key: &str) -> Option<&Histogram<u64>> {
        self.histograms.get(key)
    }

    /// Adds `histogram`'s counts under `key`.
    pub fn add_histogram(&mut self, key: &str, histogram: &Histogram<u64>) -> anyhow::Result<()> {
        self.histograms
            .entry(key.to_owned())
            .or_insert_with(self::histogram)
            .add(histogram)
            .map_err(|e| anyhow::anyhow!("merging histogram {key}: {e:?}"))
    }

    /// Adds everything `other` measured.
    pub fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        for (key, n) in &other.counters {
            self.add(key, *n);
        }
        for (key, histogram) in &other.histograms {
            self.add_histogram(key, histogram)?;
        }
        Ok(())
    }

    /// One line of JSON: counters as numbers, histograms in hdrhistogram's V2 format, hex-encoded.
    pub fn to_line(&self) -> anyhow::Result<String> {
        let mut histograms = Map::new();
        for (key, histogram) in &self.histograms {
            let mut bytes = Vec::new();
            V2Serializer::new()
                .serialize(histogram, &mut bytes)
                .map_err(|e| anyhow::anyhow!("serializing histogram {key}: {e:?}"))?;
            histograms.insert(key.clone(), Value::String(hex::encode(bytes)));
        }
        let counters: Map<String, Value> = self
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect();
        Ok(serde_json::json!({"counters": counters, "histograms": histograms}).to_string())
    }

    pub fn from_line(line: &str) -> anyhow::Result<Stats> {
        let value: Value = serde_json::from_str(line).context("child result is not JSON")?;
        let mut stats = Stats::default();
        if let Some(counters) = value["counters"].as_object() {
            for (key, n) in counters {
                stats.add(key, n.as_u64().context("counter is not a number")?);
            }
        }
        if let Some(histograms) = value["histograms"].as_object() {
            for (key, text) in histograms {
                let bytes = hex::decode(text.as_str().context("histogram is not text")?)?;
                let histogram: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .map_err(|e| anyhow::anyhow!("reading histogram {key}: {e:?}"))?;
                stats.add_histogram(key, &histogram)?;
            }
        }
        Ok(stats)
    }
}

/// A latency percentile in milliseconds, as the tables print it ("-" without samples).
pub fn ms(histogram: Option<&Histogram<u64>>, quantile: f64) -> String {
    match histogram {
        Some(h) if !h.is_empty() => format!("{:.2}", h.value_at_quantile(quantile) as f64 / 1000.0),
        _ => "-".to_owned(),
    }
}

/// The largest latency in milliseconds ("-" without samples).
pub fn max_ms(histogram: Option<&Histogram<u64>>) -> String {
    match histogram {
        Some(h) if !h.is_empty() => format!("{:.2}", h.max() as f64 / 1000.0),
        _ => "-".to_owned(),
    }
}
