//! The operator page as HTML: one self-contained document (inline style, no script), refreshed
//! by the browser every 5 seconds. Every text from the bridge's state is escaped.

use std::fmt::Write;

use super::{Status, short, time};

/// Text made safe for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;min-width:40em}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00020;font-weight:600}.ok{color:#0a7d32}\
.muted{color:#777}code{font-size:.95em}";

/// A table with these column names and rows of already escaped cells; `empty` when no rows.
fn table(out: &mut String, id: &str, head: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = write!(out, "<p class=\"muted\" id=\"{id}\">{}</p>", esc(empty));
        return;
    }
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(cell);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn td(text: &str) -> String {
    format!("<td>{}</td>", esc(text))
}

fn num(n: impl std::fmt::Display) -> String {
    format!("<td class=\"n\">{n}</td>")
}

fn ms(v: f64) -> String {
    if v.is_infinite() {
        num("&gt; 8 s")
    } else {
        num(format!("{v} ms"))
    }
}

/// The whole page.
pub(super) fn render(s: &Status) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>soapbridge: operations</title>\
         <style>{STYLE}</style></head><body><h1>soapbridge</h1>\
         <p id=\"config\">Configuration generation <b>{}</b>{} · page made {}</p>",
        s.generation,
        s.last_reload
            .as_deref()
            .map(|t| format!(", reloaded {}", esc(t)))
            .unwrap_or_default(),
        esc(&s.now)
    );

    out.push_str("<h2>Traffic, last minute</h2>");
    let rows: Vec<Vec<String>> = s
        .traffic
        .iter()
        .map(|t| {
            let errors = if t.errors > 0 {
                format!("<td class=\"n bad\">{}</td>", t.errors)
            } else {
                num(0)
            };
            vec![
                td(t.door),
                td(t.service),
                td(t.operation),
                num(format!("{:.2}/s", t.per_second)),
                num(t.calls),
                errors,
                ms(t.p50_ms),
                ms(t.p99_ms),
            ]
        })
        .collect();
    table(
        &mut out,
        "traffic",
        &[
            "door",
            "service",
            "operation",
            "rate",
            "calls",
            "errors",
            "p50",
            "p99",
        ],
        &rows,
        "No calls in the last minute.",
    );

    out.push_str("<h2>Backends</h2>");
    let rows: Vec<Vec<String>> = s
        .backends
        .iter()
        .map(|b| {
            let last = match &b.last {
                None => "<td class=\"muted\">not called yet</td>".to_string(),
                Some(h) if h.last_error.is_empty() => {
                    format!("<td class=\"ok\">ok at {}</td>", esc(&time(h.at_ms)))
                }
                Some(h) => format!(
                    "<td class=\"bad\">{} at {}</td>",
                    esc(h.last_error),
                    esc(&time(h.at_ms))
                ),
            };
            let breaker = if b.breaker == "closed" {
                td(b.breaker)
            } else {
                format!("<td class=\"bad\">{}</td>", esc(b.breaker))
            };
            vec![td(&b.name), last, breaker, num(b.in_flight)]
        })
        .collect();
    table(
        &mut out,
        "backends",
        &["backend", "last call", "circuit breaker", "in flight"],
        &rows,
        "No backends are configured.",
    );

    if let Some(stock) = &s.stock {
        out.push_str("<h2>Stock batches</h2>");
        if let Some(why) = &stock.unavailable {
            let _ = write!(
                out,
                "<p class=\"bad\">The store cannot be read: {}</p>",
                esc(why)
            );
        }
        let rows: Vec<Vec<String>> = stock
            .counts
            .iter()
            .map(|(state, n)| vec![td(state), num(n)])
            .collect();
        table(
            &mut out,
            "stock",
            &["state", "batches"],
            &rows,
            "No batches yet.",
        );
        if let Some(age) = stock.oldest_pending_seconds {
            let _ = write!(out, "<p>Oldest batch waiting: {age} s</p>");
        }
        let rows: Vec<Vec<String>> = stock
            .failed
            .iter()
            .map(|b| {
                vec![
                    num(b.id),
                    td(&b.key),
                    td(b.action),
                    num(b.attempts),
                    td(&short(&b.last_error, 200)),
                ]
            })
            .collect();
        out.push_str("<h3>Failed batches</h3>");
        table(
            &mut out,
            "failed-batches",
            &["batch", "key", "action", "attempts", "last error"],
            &rows,
            "No failed batches.",
        );
        let rows: Vec<Vec<String>> = stock
            .reports
            .iter()
            .map(|r| {
                vec![
                    num(r.id),
                    num(r.batch_id.map(|b| b.to_string()).unwrap_or_default()),
                    td(&r.code),
                    td(&short(&r.description, 200)),
                    td(&r.at),
                ]
            })
            .collect();
        out.push_str("<h3>Error reports</h3>");
        table(
            &mut out,
            "reports",
            &["report", "batch", "code", "description", "at"],
            &rows,
            "No error reports.",
        );
    }

    out.push_str("<h2>Last failures</h2>");
    let rows: Vec<Vec<String>> = s
        .failures
        .iter()
        .map(|f| {
            vec![
                td(&time(f.at_ms)),
                format!("<td><code>{}</code></td>", esc(&f.request_id)),
                td(f.door),
                td(f.service),
                td(f.operation),
                format!("<td class=\"bad\">{}</td>", esc(f.code)),
                num(f.status),
            ]
        })
        .collect();
    table(
        &mut out,
        "failures",
        &[
            "at",
            "request id",
            "door",
            "service",
            "operation",
            "code",
            "HTTP",
        ],
        &rows,
        "No failures.",
    );
    out.push_str(
        "<p class=\"muted\">JSON: <a href=\"status.json\">status.json</a> · metrics: <a href=\"/metrics\">/metrics</a></p></body></html>",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Failed;

    #[test]
    fn names_from_the_state_are_escaped() {
        let status = Status {
            now: "2026-12-03T00:00:00Z".into(),
            generation: 3,
            last_reload: None,
            traffic: vec![],
            backends: vec![],
            stock: None,
            failures: vec![Failed {
                at_ms: 0,
                request_id: "<script>alert(1)</script>".into(),
                door: "soap",
                service: "S",
                operation: "op",
                code: "BACKEND_TIMEOUT",
                status: 504,
            }],
        };
        let html = render(&status);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("generation <b>3</b>"), "{html}");
    }
}
