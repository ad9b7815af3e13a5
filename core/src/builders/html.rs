//! An app's pages as templates (shared by the JavaScript builder and Flutter's web
//! post-processing): the app's `index.html` as a template: its local scripts become bundle entries and
//! its local stylesheets join the entry's CSS; the built tags are injected in their
//! place (what HtmlWebpackPlugin did for the platform). An app without one gets a
//! minimal page.

use std::cell::{Cell, RefCell};

use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, rewrite_str};

use crate::error::{BuildError, Result};

/// A local script or stylesheet the page references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRefs {
    /// `src` of local `<script src>` tags, in order (as written, without a leading `./` or `/`).
    pub scripts: Vec<String>,
    /// `href` of local `<link rel="stylesheet">` tags, in order.
    pub stylesheets: Vec<String>,
}

/// Whether a reference points into the app (not another origin, not data).
pub fn is_local(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    !(lower.is_empty()
        || lower.starts_with("//")
        || lower.contains("://")
        || lower.starts_with("data:")
        || lower.starts_with("blob:")
        || lower.starts_with('#'))
}

/// A local reference as a path relative to the app root (query and fragment dropped).
pub fn local_path(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].trim().trim_start_matches("./").trim_start_matches('/').to_string()
}

fn is_stylesheet(rel: Option<String>) -> bool {
    rel.is_some_and(|r| r.split_ascii_whitespace().any(|t| t.eq_ignore_ascii_case("stylesheet")))
}

fn html_error(e: impl std::fmt::Display) -> crate::Error {
    BuildError::Validation(format!("index.html could not be processed: {e}")).into()
}

/// The local scripts and stylesheets of a page.
pub fn scan(html: &str) -> Result<PageRefs> {
    let scripts = RefCell::new(Vec::new());
    let stylesheets = RefCell::new(Vec::new());
    rewrite_str(
        html,
        RewriteStrSettings {
            element_content_handlers: vec![
                element!("script[src]", |el| {
                    if let Some(src) = el.get_attribute("src").filter(|s| is_local(s)) {
                        scripts.borrow_mut().push(local_path(&src));
                    }
                    Ok(())
                }),
                element!("link[href]", |el| {
                    if is_stylesheet(el.get_attribute("rel"))
                        && let Some(href) = el.get_attribute("href").filter(|s| is_local(s))
                    {
                        stylesheets.borrow_mut().push(local_path(&href));
                    }
                    Ok(())
                }),
            ],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(html_error)?;
    Ok(PageRefs { scripts: scripts.into_inner(), stylesheets: stylesheets.into_inner() })
}

/// The tags the build adds to the page.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    /// Into `<head>`: stylesheet links, preloads.
    pub head: String,
    /// At the end of `<body>`: entry scripts.
    pub body: String,
    /// Keep the template's local scripts and stylesheets (Create React App's page names files
    /// of public/, published as they are) instead of replacing them by the built ones.
    pub keep_local_tags: bool,
}

/// Where a web app manifest from `public/manifest.json` is published: the release's own
/// `manifest.json` (the build manifest) keeps that name.
pub const WEB_MANIFEST: &str = "manifest.webmanifest";

/// Replace the page's local scripts and stylesheets by the built tags; a local
/// `<link rel="manifest" href=".../manifest.json">` points at the renamed web manifest.
pub fn render(template: &str, injected: &Injected) -> Result<String> {
    let saw_head = Cell::new(false);
    let saw_body = Cell::new(false);
    let out = rewrite_str(
        template,
        RewriteStrSettings {
            element_content_handlers: vec![
                element!("link[rel=manifest][href]", |el| {
                    if el.get_attribute("href").is_some_and(|h| is_local(&h) && local_path(&h) == "manifest.json") {
                        el.set_attribute("href", &format!("./{WEB_MANIFEST}"))?;
                    }
                    Ok(())
                }),
                element!("script[src]", |el| {
                    if !injected.keep_local_tags && el.get_attribute("src").is_some_and(|s| is_local(&s)) {
                        el.remove();
                    }
                    Ok(())
                }),
                element!("link[href]", |el| {
                    if !injected.keep_local_tags
                        && is_stylesheet(el.get_attribute("rel"))
                        && el.get_attribute("href").is_some_and(|s| is_local(&s))
                    {
                        el.remove();
                    }
                    Ok(())
                }),
                element!("head", |el| {
                    saw_head.set(true);
                    el.append(&injected.head, ContentType::Html);
                    Ok(())
                }),
                element!("body", |el| {
                    saw_body.set(true);
                    el.append(&injected.body, ContentType::Html);
                    Ok(())
                }),
            ],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(html_error)?;
    // A page without explicit <head>/<body> tags still gets the tags, in document order.
    let mut out = out;
    if !saw_head.get() {
        out = format!("{}{out}", injected.head);
    }
    if !saw_body.get() {
        out.push_str(&injected.body);
    }
    Ok(out)
}

/// Append markup at the end of the page's `<body>` (or of the page), touching nothing else.
pub fn append_to_body(page: &str, markup: &str) -> Result<String> {
    append_to(page, "body", markup)
}

/// Append markup at the end of the page's `<head>` (or at the start of the page).
pub fn append_to_head(page: &str, markup: &str) -> Result<String> {
    append_to(page, "head", markup)
}

fn append_to(page: &str, element: &str, markup: &str) -> Result<String> {
    let found = Cell::new(false);
    let mut out = rewrite_str(
        page,
        RewriteStrSettings {
            element_content_handlers: vec![element!(element, |el| {
                found.set(true);
                el.append(markup, ContentType::Html);
                Ok(())
            })],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(html_error)?;
    match (found.get(), element) {
        (true, _) => {}
        (false, "head") => out.insert_str(0, markup),
        (false, _) => out.push_str(markup),
    }
    Ok(out)
}

/// The page of an app that has no index.html.
pub fn minimal_page(title: &str, injected: &Injected) -> String {
    let title = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n{}</head>\n<body>\n<div id=\"app\"></div>\n<div id=\"root\"></div>\n{}</body>\n</html>\n",
        injected.head, injected.body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html><head><title>t</title>
<link rel="stylesheet" href="./css/site.css"><link rel="stylesheet" href="https://cdn.example.com/x.css">
<link rel="icon" href="favicon.ico"></head>
<body><div id="app"></div><script type="module" src="/src/main.js"></script>
<script src="https://cdn.example.com/lib.js"></script><script>inline()</script></body></html>"#;

    #[test]
    fn local_references_are_found() {
        let refs = scan(PAGE).unwrap();
        assert_eq!(refs.scripts, vec!["src/main.js"]);
        assert_eq!(refs.stylesheets, vec!["css/site.css"]);
    }

    #[test]
    fn built_tags_replace_local_ones() {
        let injected = Injected {
            head: "<link rel=\"stylesheet\" href=\"assets/main-1.css\">".into(),
            body: "<script type=\"module\" src=\"assets/main-1.js\"></script>".into(),
            keep_local_tags: false,
        };
        let out = render(PAGE, &injected).unwrap();
        assert!(!out.contains("/src/main.js") && !out.contains("./css/site.css"), "{out}");
        assert!(out.contains("https://cdn.example.com/x.css") && out.contains("https://cdn.example.com/lib.js"));
        assert!(out.contains("inline()") && out.contains("favicon.ico"));
        let head_end = out.find("</head>").unwrap();
        assert!(out.find("assets/main-1.css").unwrap() < head_end);
        assert!(out.find("assets/main-1.js").unwrap() > out.find("<body>").unwrap());
        let bare = render("<p>hi</p>", &injected).unwrap();
        assert!(bare.starts_with("<link") && bare.ends_with("</script>"));
        // Create React App's page: its own tags name files of public/ and stay.
        let kept = render(PAGE, &Injected { keep_local_tags: true, ..injected }).unwrap();
        assert!(kept.contains("/src/main.js") && kept.contains("./css/site.css") && kept.contains("assets/main-1.js"));
    }
}
