//! Vite's env files: `.env`, `.env.local`, `.env.<mode>`, `.env.<mode>.local` at the app root,
//! later ones winning, the app config's `env` over all of them. Their public variables
//! (`VITE_*`, `WORKZ_PUBLIC_*`) are compiled into the app as `import.meta.env.NAME`, as Vite
//! does; the rest only serve `$NAME` references. Never the worker's own environment, so a
//! value cannot carry one of the worker's secrets into a published bundle.

use std::collections::BTreeMap;

/// The env files of `mode`, lowest priority first.
pub fn files(mode: &str) -> [String; 4] {
    [".env".into(), ".env.local".into(), format!(".env.{mode}"), format!(".env.{mode}.local")]
}

/// The variables of the env files' `texts` (lowest priority first) under the app config's
/// `env`, with `$NAME`, `${NAME}` and `${NAME:-default}` expanded.
pub fn variables(texts: &[String], app_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut raw = BTreeMap::new();
    for text in texts {
        raw.extend(parse(text));
    }
    raw.extend(app_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut expanded = BTreeMap::new();
    for (name, value) in &raw {
        // The app config's values are taken as written, as Vite takes the process environment.
        let value = if app_env.contains_key(name) { value.clone() } else { expand(value, &raw, 0) };
        expanded.insert(name.clone(), value);
    }
    expanded
}

/// `KEY=value` lines as dotenv reads them: `export ` allowed, `#` comments, values single-,
/// double- (with `\n`) or backtick-quoted (and then over several lines) or bare up to a `#`.
/// Lines that are not assignments are skipped, as dotenv skips them.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let mut next = line_end + 1;
        if let Some((key, value_at)) = assignment(text, at, line_end) {
            let raw = &text[value_at..];
            let quoted = raw.chars().next().filter(|c| matches!(c, '\'' | '"' | '`'));
            let value = match quoted.and_then(|q| closing(raw, q).map(|end| (q, end))) {
                Some((q, end)) => {
                    next = text[value_at + end..].find('\n').map_or(text.len(), |i| value_at + end + i) + 1;
                    let inner = &raw[1..end];
                    if q == '"' { inner.replace("\\n", "\n").replace("\\r", "\r") } else { inner.to_string() }
                }
                None => text[value_at..line_end].split('#').next().unwrap_or("").trim().to_string(),
            };
            vars.push((key, value));
        }
        at = next;
    }
    vars
}

/// The key of the line `text[at..end]` and where its value starts, if it is an assignment.
fn assignment(text: &str, at: usize, end: usize) -> Option<(String, usize)> {
    let line = text[at..end].trim_start();
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let key_len = line.find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c))).unwrap_or(line.len());
    if key_len == 0 {
        return None;
    }
    let value = line[key_len..].trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = value.trim_start_matches([' ', '\t']);
    Some((line[..key_len].to_string(), end - value.len()))
}

/// The byte offset of the quote closing `raw`'s opening `quote` (a backslash escapes one).
fn closing(raw: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in raw.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// `value` with `$NAME`, `${NAME}` and `${NAME:-default}` replaced from `vars` (unknown: the
/// default or empty) and `\$` kept as `$`. References nest at most 8 deep (a cycle ends empty).
fn expand(value: &str, vars: &BTreeMap<String, String>, depth: usize) -> String {
    let lookup = |name: &str| match vars.get(name) {
        Some(v) if depth < 8 => Some(expand(v, vars, depth + 1)),
        _ => None,
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if rest[i..].starts_with("\\$") {
            out.push('$');
            rest = &after[1..];
        } else if rest[i..].starts_with('\\') {
            out.push('\\');
            rest = after;
        } else if let Some(inner) = after.strip_prefix('{').and_then(|a| a.find('}').map(|end| &a[..end])) {
            let (name, default) = inner.split_once(":-").map_or((inner, None), |(n, d)| (n, Some(d)));
            let found = lookup(name).filter(|v| !v.is_empty() || default.is_none());
            out.push_str(&found.unwrap_or_else(|| default.map(|d| expand(d, vars, depth + 1)).unwrap_or_default()));
            rest = &after[inner.len() + 2..];
        } else {
            let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dotenv_lines_are_read_as_dotenv_reads_them() {
        let text = "# a comment\n\
                    VITE_A=plain value # trailing comment\n\
                    export VITE_B = 'single # not a comment'\n\
                    VITE_C=\"line one\\nline two\"\r\n\
                    VITE_D=\"spans\n  two lines\" # after\n\
                    VITE_E=\n\
                    not an assignment\n\
                    VITE_F=`back\"tick`\n\
                    VITE_G='unclosed\n\
                    VITE_H=caf\u{e9}";
        assert_eq!(
            parse(text),
            [
                ("VITE_A", "plain value"),
                ("VITE_B", "single # not a comment"),
                ("VITE_C", "line one\nline two"),
                ("VITE_D", "spans\n  two lines"),
                ("VITE_E", ""),
                ("VITE_F", "back\"tick"),
                ("VITE_G", "'unclosed"),
                ("VITE_H", "caf\u{e9}"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn later_files_win_the_app_config_wins_over_all_and_references_expand() {
        let texts = [
            "VITE_HOST=example.com\nVITE_URL=https://${VITE_HOST}/api\nVITE_MODE=base\nSECRET=s3\n".to_string(),
            "VITE_HOST=prod.example.com\nVITE_PRICE=\\$5\nVITE_FALLBACK=${MISSING:-none}\nVITE_LOOP=$VITE_LOOP\n"
                .to_string(),
        ];
        let vars = variables(&texts, &map(&[("VITE_MODE", "from $config")]));
        assert_eq!(vars["VITE_URL"], "https://prod.example.com/api");
        assert_eq!(vars["VITE_MODE"], "from $config");
        assert_eq!(vars["VITE_PRICE"], "$5");
        assert_eq!(vars["VITE_FALLBACK"], "none");
        assert_eq!(vars["VITE_LOOP"], "");
        // The worker's environment is never read.
        let texts = ["VITE_HOME=$HOME\n".to_string()];
        assert_eq!(variables(&texts, &BTreeMap::new())["VITE_HOME"], "");
    }
}
