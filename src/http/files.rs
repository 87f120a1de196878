//! Files under `/public/`: uploaded files from `<IM_PUBLIC_DIR>/upload`, and the default pictures
//! (`/public/images/head1.png` .. `head9.png`, `group.png`), embedded in the binary so they are
//! served wherever it runs. Drawn by `static/images/generate.py`.

use std::sync::Arc;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::App;

const IMAGES: [(&str, &[u8]); 10] = [
    ("head1.png", include_bytes!("../../static/images/head1.png")),
    ("head2.png", include_bytes!("../../static/images/head2.png")),
    ("head3.png", include_bytes!("../../static/images/head3.png")),
    ("head4.png", include_bytes!("../../static/images/head4.png")),
    ("head5.png", include_bytes!("../../static/images/head5.png")),
    ("head6.png", include_bytes!("../../static/images/head6.png")),
    ("head7.png", include_bytes!("../../static/images/head7.png")),
    ("head8.png", include_bytes!("../../static/images/head8.png")),
    ("head9.png", include_bytes!("../../static/images/head9.png")),
    ("group.png", include_bytes!("../../static/images/group.png")),
];

/// The `/public/` routes; uploads are read from the configured folder.
pub fn router(app: &App) -> Router<Arc<App>> {
    let uploads = Router::new()
        .fallback_service(ServeDir::new(app.config.public_dir.join("upload")))
        // Whatever a file holds, a browser must not run it as a page of our origin.
        .layer(SetResponseHeaderLayer::overriding(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; media-src 'self'; sandbox"),
        ));
    Router::new()
        .route("/public/images/{name}", get(show_image))
        .nest("/public/upload", uploads)
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

async fn show_image(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match IMAGES.iter().find(|(known, _)| *known == name) {
        Some((_, bytes)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static("image/png")),
                (
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=86400"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
