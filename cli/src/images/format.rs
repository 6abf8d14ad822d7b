//! Docker's ways of printing: tables, human sizes and durations.

use std::fmt::Write as _;

/// A column-aligned table like Docker's tabwriter output (3 spaces between columns).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 3;
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", sig3(v), UNITS[i])
}

/// `%.3g` without exponent: 3 significant digits, trailing zeros dropped.
fn sig3(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// go-units `HumanDuration` + " ago", from an RFC 3339 time; "N/A" if unknown.
pub fn time_ago(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return "N/A".to_string();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    format!("{} ago", human_duration(secs.max(0)))
}

pub fn human_duration(secs: i64) -> String {
    let minutes = secs / 60;
    let hours = secs / 3600;
    let mut s = String::new();
    let _ = match () {
        _ if secs < 1 => write!(s, "Less than a second"),
        _ if secs == 1 => write!(s, "1 second"),
        _ if secs < 60 => write!(s, "{secs} seconds"),
        _ if minutes == 1 => write!(s, "About a minute"),
        _ if minutes < 60 => write!(s, "{minutes} minutes"),
        _ if hours == 1 => write!(s, "About an hour"),
        _ if hours < 48 => write!(s, "{hours} hours"),
        _ if hours < 24 * 7 * 2 => write!(s, "{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => write!(s, "{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => write!(s, "{} months", hours / 24 / 30),
        _ => write!(s, "{} years", hours / 24 / 365),
    };
    s
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// JSON with 4-space indent, as `docker inspect` prints.
pub fn json_pretty(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => v.to_string(),
    }
}

/// A `--format` value of a list command (`ps`, `images`): Docker's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFormat {
    /// `table` (the default columns) or `table TEMPLATE` (a header row, aligned columns).
    Table(Option<String>),
    /// `json`: one JSON object per line.
    Json,
    /// A bare Go template, one line per row, no header.
    Template(String),
}

impl ListFormat {
    pub fn parse(format: &str) -> ListFormat {
        let f = format.trim();
        match f {
            "" | "table" => ListFormat::Table(None),
            "json" => ListFormat::Json,
            _ => match f.strip_prefix("table ") {
                Some(t) => ListFormat::Table(Some(t.to_string())),
                None => ListFormat::Template(f.to_string()),
            },
        }
    }
}

/// A template value as text: strings as they are, others as JSON (`<no value>` for null, as Go).
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<no value>".to_string(),
        other => other.to_string(),
    }
}

/// A list template's value of top-level field `name` of `row`.
fn field_text(row: &serde_json::Value, name: &str) -> Option<String> {
    row.get(name).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The value at a dotted path (`.State.ExitCode`; `.` is `row` itself).
fn lookup<'a>(row: &'a serde_json::Value, path: &str) -> Result<&'a serde_json::Value, String> {
    let path = path
        .strip_prefix('.')
        .ok_or_else(|| format!("template: unsupported argument {path:?} (use .Field)"))?;
    let mut v = row;
    for name in path.split('.').filter(|n| !n.is_empty()) {
        v = v
            .get(name)
            .ok_or_else(|| format!("template: can't evaluate field {name}"))?;
    }
    Ok(v)
}

/// Renders the Go-template subset Docker users type for list and inspect output: text with
/// `\t`/`\n` escapes and the actions `{{.Field.Sub}}`, `{{json .Field}}` and
/// `{{index .Field "key"}}` over `row` (an object with Docker's field names). Unknown fields
/// and other actions are errors, as in Docker.
pub fn render_template(tpl: &str, row: &serde_json::Value) -> Result<String, String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template: unclosed action in {tpl:?}"))?;
        let action = after[..end].trim().trim_matches('-').trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        match words.as_slice() {
            [path] if path.starts_with('.') => out.push_str(&value_text(lookup(row, path)?)),
            ["json", path] => out.push_str(&lookup(row, path)?.to_string()),
            ["index", path, key] => {
                let key = key.trim_matches('"');
                let v = lookup(row, path)?;
                let item = match key.parse::<usize>() {
                    Ok(i) if v.is_array() => v.get(i),
                    _ => v.get(key),
                };
                out.push_str(&item.map_or_else(|| "<no value>".to_string(), value_text));
            }
            _ => {
                return Err(format!(
                    "template: unsupported action {{{{{action}}}}} (use {{{{.Field}}}}, {{{{json .Field}}}} or {{{{index .Field \"key\"}}}})"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Prints `rows` in `format`: the default table is `columns` (field, header); a table
/// template gets a header row with each field's header from `headers` (the field name
/// upper-cased when not listed) and aligned, tab-separated columns.
pub fn render_list(
    format: &ListFormat,
    columns: &[(&str, &str)],
    headers: &[(&str, &str)],
    rows: &[serde_json::Value],
) -> Result<String, String> {
    match format {
        ListFormat::Json => Ok(rows.iter().map(|r| format!("{r}\n")).collect()),
        ListFormat::Template(t) => rows
            .iter()
            .map(|r| render_template(t, r).map(|l| format!("{l}\n")))
            .collect(),
        ListFormat::Table(None) => {
            let header: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|(f, _)| field_text(r, f).unwrap_or_default())
                        .collect()
                })
                .collect();
            Ok(table(&header, &cells))
        }
        ListFormat::Table(Some(t)) => {
            // The header row: each field the template names, as its column title.
            let mut names = serde_json::Map::new();
            for part in t.split("{{").skip(1) {
                let action = part.split("}}").next().unwrap_or("");
                if let Some(field) = action.split_whitespace().find_map(|w| w.strip_prefix('.')) {
                    let h = headers
                        .iter()
                        .find(|(f, _)| *f == field)
                        .map(|(_, h)| h.to_string())
                        .unwrap_or_else(|| field.to_uppercase());
                    names.insert(field.to_string(), serde_json::Value::String(h));
                }
            }
            let header_line = render_template(t, &serde_json::Value::Object(names))?;
            let header: Vec<String> = header_line.split('\t').map(str::to_string).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let cells = rows
                .iter()
                .map(|r| render_template(t, r).map(|l| l.split('\t').map(str::to_string).collect()))
                .collect::<Result<Vec<Vec<String>>, String>>()?;
            Ok(table(&header, &cells))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_formats() {
        let rows = vec![serde_json::json!({"ID": "abc", "Names": "web", "Size": 3})];
        let cols = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        assert_eq!(ListFormat::parse("json"), ListFormat::Json);
        let t = render_list(&ListFormat::parse("table"), &cols, &cols, &rows).unwrap();
        assert_eq!(t, "CONTAINER ID   NAMES\nabc            web\n");
        let t = render_list(
            &ListFormat::parse("table {{.Names}}\\t{{.ID}}"),
            &cols,
            &cols,
            &rows,
        )
        .unwrap();
        assert_eq!(t, "NAMES   CONTAINER ID\nweb     abc\n");
        let t = render_list(
            &ListFormat::parse("{{.ID}}: {{json .Size}}"),
            &cols,
            &cols,
            &rows,
        );
        assert_eq!(t.unwrap(), "abc: 3\n");
        let j = render_list(&ListFormat::Json, &cols, &cols, &rows).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&j).unwrap(),
            rows[0]
        );
        assert!(render_template("{{.Nope}}", &rows[0]).is_err());
        let t = render_list(
            &ListFormat::parse("table {{.Names}}\\t{{.Size}}"),
            &cols,
            &cols,
            &[],
        );
        assert_eq!(t.unwrap(), "NAMES   SIZE\n");
        assert!(render_template("{{if .ID}}", &rows[0]).is_err());
    }

    #[test]
    fn inspect_templates_walk_paths_and_index() {
        let v = serde_json::json!({
            "State": {"ExitCode": 3, "Status": "exited", "Health": null},
            "Config": {"Labels": {"a.b": "x"}, "Env": ["A=1", "B=2"]},
        });
        let r = |t: &str| render_template(t, &v);
        assert_eq!(
            r("{{.State.Status}} {{.State.ExitCode}}").unwrap(),
            "exited 3"
        );
        assert_eq!(r("{{json .Config.Env}}").unwrap(), r#"["A=1","B=2"]"#);
        assert_eq!(r(r#"{{index .Config.Labels "a.b"}}"#).unwrap(), "x");
        assert_eq!(r("{{index .Config.Env 1}}").unwrap(), "B=2");
        assert_eq!(r("{{.State.Health}}").unwrap(), "<no value>");
        assert!(r("{{.State.Nope}}").unwrap_err().contains("Nope"));
        assert!(r("{{range .Config.Env}}{{.}}{{end}}").is_err());
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(human_size(5_000_000), "5MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(12_345), "12.3kB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn tables_and_ellipsis() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A     LONGER\nxyz   1\n");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}
