//! Reference backend: (being written).

use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;

#[derive(Debug)]
pub struct DiaApi {}

impl DiaApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        Err(format!(
            "{}: this reference backend is not written yet",
            path.display()
        ))
    }

    pub async fn handle(&self, _req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        super::json_response(StatusCode::NOT_IMPLEMENTED, &serde_json::json!({}))
    }
}
