//! The page: what it shows, as HTML for people and JSON for programs.
//!
//! Status codes: the page answers 200 whenever it can render, even with a backend down — the
//! failed part says "counter unavailable" / "records unavailable", the JSON carries `null` plus
//! an `errors` entry, and the `x-visits-degraded` header lists the failed parts so monitors and
//! load tests see it. Readiness (`/healthz`, see [`crate::health`]) is where a failing backend
//! turns into 503: a load balancer stops sending traffic, a visitor still gets a page.

use serde_json::{json, Map, Value};

use crate::config::PageSettings;
use crate::html::escape;
use crate::record::Record;
use crate::time::UtcTime;

/// One part of the page that comes from a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section<T> {
    Ready(T),
    /// The backend failed; the reason is shown (escaped) and logged.
    Unavailable(String),
    /// Switched off by configuration (`records_backend = "off"`).
    Disabled,
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageView {
    pub author: String,
    pub project: String,
    pub version: String,
    pub hostname: String,
    pub date: UtcTime,
    pub visits: Section<u64>,
    pub records: Section<Vec<Record>>,
    /// Stored visits left out because they did not decode ([`crate::record::Listing`]).
    pub records_skipped: usize,
}

pub const DEGRADED_HEADER: &str = "x-visits-degraded";

impl PageView {
    pub fn new(
        settings: &PageSettings,
        date: UtcTime,
        visits: Section<u64>,
        records: Section<Vec<Record>>,
    ) -> Self {
        PageView {
            author: settings.author.clone(),
            project: settings.project.clone(),
            version: settings.version.clone(),
            hostname: settings.hostname.clone(),
            date,
            visits,
            records,
            records_skipped: 0,
        }
    }

    /// Says on the page that `n` stored visits could not be read.
    pub fn with_records_skipped(mut self, n: usize) -> Self {
        self.records_skipped = n;
        self
    }

    /// The failed parts, for the [`DEGRADED_HEADER`] header (empty when all is well).
    pub fn degraded(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if matches!(self.visits, Section::Unavailable(_)) {
            out.push("counter");
        }
        if matches!(self.records, Section::Unavailable(_)) {
            out.push("records");
        }
        out
    }

    pub fn to_json(&self) -> String {
        let mut errors = Map::new();
        let visits = match &self.visits {
            Section::Ready(n) => json!(n),
            Section::Unavailable(e) => {
                errors.insert("counter".into(), json!(e));
                Value::Null
            }
            Section::Disabled => Value::Null,
        };
        let records = match &self.records {
            Section::Ready(r) => json!(r),
            Section::Unavailable(e) => {
                errors.insert("records".into(), json!(e));
                Value::Null
            }
            Section::Disabled => Value::Null,
        };
        json!({
            "author": self.author,
            "project": self.project,
            "version": self.version,
            "hostname": self.hostname,
            "date": self.date,
            "visits": visits,
            "records_enabled": !matches!(self.records, Section::Disabled),
            "records": records,
            "records_skipped": self.records_skipped,
            "errors": errors,
        })
        .to_string()
    }

    pub fn to_html(&self) -> String {
        let e = |s: &str| escape(s);
        let visits = match &self.visits {
            Section::Ready(n) => format!(r#"<span id="visits" class="count">{n}</span>"#),
            Section::Unavailable(why) => format!(
                r#"<span id="visits" class="unavailable" title="{}">counter unavailable</span>"#,
                e(why)
            ),
            Section::Disabled => r#"<span id="visits">disabled</span>"#.to_string(),
        };
        let records = match &self.records {
            Section::Ready(records) if records.is_empty() => {
                r#"<p id="records-empty">No visits recorded yet.</p>"#.to_string()
            }
            Section::Ready(records) => {
                let rows: String = records
                    .iter()
                    .map(|r| {
                        format!(
                            "<tr><td class=\"ip\">{}</td><td class=\"date\"><time datetime=\"{}\">{}</time></td></tr>\n",
                            e(&r.client_ip.to_string()),
                            e(&r.date.to_rfc3339()),
                            e(&r.date.to_display()),
                        )
                    })
                    .collect();
                format!(
                    "<table id=\"records\">\n<caption>Last {} visits, newest first</caption>\n\
                     <thead><tr><th>Client IP</th><th>Date</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>",
                    records.len()
                )
            }
            Section::Unavailable(why) => format!(
                r#"<p id="records-unavailable" class="unavailable" title="{}">records unavailable</p>"#,
                e(why)
            ),
            Section::Disabled => String::new(),
        };
        let records = match self.records_skipped {
            0 => records,
            n => format!(
                "{records}\n<p id=\"records-skipped\" class=\"unavailable\">{n} stored visit{} could not be read and {} not shown.</p>",
                if n == 1 { "" } else { "s" },
                if n == 1 { "is" } else { "are" },
            ),
        };
        let records_section = if matches!(self.records, Section::Disabled) {
            String::new()
        } else {
            format!("<section>\n<h2>Recent visits</h2>\n{records}\n</section>\n")
        };
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{project} {version}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #1d2433; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }}
dt {{ font-weight: 600; }}
.count {{ font-size: 1.4rem; font-weight: 700; }}
.unavailable {{ color: #a11d1d; font-weight: 600; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #d7dbe3; }}
caption {{ text-align: left; color: #5a6275; padding-bottom: .3rem; }}
</style>
</head>
<body>
<h1 id="project">{project}</h1>
<dl>
<dt>Author</dt><dd id="author">{author}</dd>
<dt>Version</dt><dd id="version">{version}</dd>
<dt>Host</dt><dd id="hostname">{hostname}</dd>
<dt>Date</dt><dd><time id="date" datetime="{date_iso}">{date}</time></dd>
<dt>Visits</dt><dd>{visits}</dd>
</dl>
{records_section}</body>
</html>
"#,
            project = e(&self.project),
            version = e(&self.version),
            author = e(&self.author),
            hostname = e(&self.hostname),
            date_iso = e(&self.date.to_rfc3339()),
            date = e(&self.date.to_display()),
        )
    }
}

/// Whether the client prefers JSON: `application/json` is listed (q > 0) and ranks above
/// `text/html` (an equal rank keeps HTML, the browser default).
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let mut json_q: Option<u16> = None;
    let mut html_q: Option<u16> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| qvalue(q.trim()))
            .unwrap_or(1000);
        match media.as_str() {
            "application/json" => json_q = Some(json_q.map_or(q, |o| o.max(q))),
            "text/html" => html_q = Some(html_q.map_or(q, |o| o.max(q))),
            _ => {}
        }
    }
    match (json_q, html_q) {
        (Some(j), Some(h)) => j > 0 && j > h,
        (Some(j), None) => j > 0,
        _ => false,
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`, at most three decimals) in thousandths. Integers,
/// not f32: float parsing alone was 4 KB of every page component.
fn qvalue(q: &str) -> Option<u16> {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    (whole + thousandths <= 1000).then_some(whole + thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues_are_read_as_rfc_9110_writes_them() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        for bad in ["1.5", "2", "0.1234", "", ".5", "0.x", "-0", "0.5e1"] {
            assert_eq!(qvalue(bad), None, "{bad}");
        }
        assert!(wants_json(Some("text/html;q=0.5, application/json;q=0.9")));
        assert!(!wants_json(Some("text/html;q=0.9, application/json;q=0.5")));
        assert!(!wants_json(Some("application/json;q=0")));
        // A malformed q is ignored (the default 1 stands), as before.
        assert!(wants_json(Some("application/json;q=abc, text/html;q=0.9")));
    }

    fn view() -> PageView {
        let settings = PageSettings {
            author: "Ada <script>alert(1)</script>".into(),
            hostname: "web-0".into(),
            ..PageSettings::default()
        };
        PageView::new(
            &settings,
            UtcTime::from_unix_millis(1_795_308_400_123),
            Section::Ready(42),
            Section::Ready(vec![Record {
                client_ip: "192.0.2.1".parse().unwrap(),
                date: UtcTime::from_unix_millis(1_795_308_400_000),
                page: "/".into(),
            }]),
        )
    }

    #[test]
    fn html_shows_every_field_escaped() {
        let html = view().to_html();
        for needle in [
            r#"<dd id="author">Ada &lt;script&gt;alert(1)&lt;/script&gt;</dd>"#,
            r#"<h1 id="project">wasm-visits</h1>"#,
            r#"<dd id="version">v1</dd>"#,
            r#"<dd id="hostname">web-0</dd>"#,
            ">2026-11-22 00:46:40 UTC</time>",
            r#"<span id="visits" class="count">42</span>"#,
            "<td class=\"ip\">192.0.2.1</td>",
        ] {
            assert!(html.contains(needle), "missing {needle} in\n{html}");
        }
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn degraded_page_says_what_is_missing() {
        let mut v = view();
        v.visits = Section::Unavailable("redis: <refused>".into());
        v.records = Section::Unavailable("mongodb: timed out".into());
        let html = v.to_html();
        assert!(html.contains("counter unavailable") && html.contains("records unavailable"));
        assert!(html.contains("title=\"redis: &lt;refused&gt;\""));
        assert_eq!(v.degraded(), ["counter", "records"]);
        let j: Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(j["visits"], Value::Null);
        assert_eq!(j["errors"]["records"], "mongodb: timed out");
    }

    #[test]
    fn skipped_records_are_counted_on_the_page() {
        let v = view();
        assert!(!v.to_html().contains("records-skipped"));
        let json = |v: &PageView| serde_json::from_str::<Value>(&v.to_json()).unwrap();
        assert_eq!(json(&v)["records_skipped"], 0);
        let v = view().with_records_skipped(1);
        assert!(v
            .to_html()
            .contains("1 stored visit could not be read and is not shown"));
        assert_eq!(json(&v)["records_skipped"], 1);
        assert!(v.degraded().is_empty(), "skipping is not a failed backend");
    }

    #[test]
    fn disabled_records_are_not_shown() {
        let mut v = view();
        v.records = Section::Disabled;
        assert!(!v.to_html().contains("Recent visits"));
        assert!(v.degraded().is_empty());
        let j: Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(j["records_enabled"], false);
    }

    #[test]
    fn json_shape() {
        let j: Value = serde_json::from_str(&view().to_json()).unwrap();
        assert_eq!(j["visits"], 42);
        assert_eq!(j["date"], "2026-11-22T00:46:40.123Z");
        assert_eq!(j["records"][0]["client_ip"], "192.0.2.1");
        assert_eq!(j["errors"], json!({}));
    }

    #[test]
    fn content_negotiation() {
        assert!(!wants_json(None));
        assert!(wants_json(Some("application/json")));
        assert!(wants_json(Some("application/json, text/plain;q=0.5")));
        assert!(!wants_json(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_json(Some("text/html, application/json")));
        assert!(wants_json(Some("text/html;q=0.5, application/json")));
        assert!(!wants_json(Some("application/json;q=0")));
        assert!(!wants_json(Some("*/*")));
    }
}
