//! The web dashboard: static files from `gateway/ui/`, compiled into the binary, served at `/`
//! (the page) and `/ui/<file>` (its script and style sheet). The page itself is plain HTML,
//! CSS and JavaScript with no build step; it logs in through `/auth/login` and reads
//! `/cluster`, `/health`, `/stats` and the resource routes like any other client.

use crate::error::ApiError;
use crate::openapi::Routes;
use actix_web::{
    http::{header, Method},
    web, HttpResponse,
};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../ui/index.html"),
};

const ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../ui/dom.js"),
    },
];

/// Only the page's own files run, nothing inline and nothing from elsewhere; the page may not
/// be framed (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        // The files change with the binary: revalidate rather than keep a stale copy.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .body(asset.body)
}

async fn index() -> HttpResponse {
    serve(&INDEX)
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == file.as_str())
        .map(serve)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {:?}", file.as_str())))
}

/// The dashboard's routes; their OpenAPI descriptions are in `crate::openapi::dashboard`.
pub fn routes<R: Routes>(r: &mut R) {
    r.add(Method::GET, "/", index)
        .add(Method::GET, "/ui", index)
        .add(Method::GET, "/ui/", index)
        .add(Method::GET, "/ui/{file}", asset);
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test::TestRequest, App};

    #[actix_web::test]
    async fn serves_the_page_and_its_files_with_their_content_types() {
        let app = actix_web::test::init_service(App::new().configure(routes)).await;
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/ui/app.js", JAVASCRIPT),
            ("/ui/style.css", "text/css; charset=utf-8"),
        ] {
            let response =
                actix_web::test::call_service(&app, TestRequest::get().uri(path).to_request())
                    .await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE).unwrap(),
                content_type,
                "{path}"
            );
        }
        let missing = TestRequest::get().uri("/ui/secrets.toml").to_request();
        assert_eq!(
            actix_web::test::call_service(&app, missing).await.status(),
            404
        );
    }

    #[test]
    fn every_file_opens_with_a_comment_saying_what_it_is_for() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            assert!(
                text.starts_with("<!--") || text.starts_with("/*") || text.starts_with("//"),
                "{} must open with a comment",
                asset.name
            );
        }
    }
}
