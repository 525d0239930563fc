//! CORS for the read API: a log is public, so a page from any origin may
//! read its checkpoint, tiles, proofs and entries (an explorer or a
//! verifier hosted elsewhere), and nothing else.
//!
//! The contract, the same as `tower_http`'s `CorsLayer` with any origin and
//! the methods GET and HEAD gave before (the Fetch standard's CORS
//! protocol):
//! - every response of a wrapped route carries
//!   `Access-Control-Allow-Origin: *`;
//! - an `OPTIONS` request (a preflight) is answered here, without calling
//!   the route: 200, empty, `Access-Control-Allow-Methods: GET,HEAD` and
//!   `Access-Control-Allow-Origin: *`. No request headers are allowed
//!   beyond the CORS-safelisted ones and no credentials: the read API
//!   needs neither.
//!
//! Why not `CorsLayer`: it is general (origin lists, credentials, `Vary`),
//! and axum clones a route's layers for every request. Its clone and the
//! header map it builds per request cost about 2 µs of a 12 µs
//! `/checkpoint` (docs/performance/2026-12-04-xeon.md, "Summary: per-request
//! layers, CORS and the router"). This layer is a unit struct, and its
//! future is not boxed.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::{ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN};
use axum::http::{HeaderValue, Method, Request, Response};
use futures_util::future::{ready, Either, MapOk, Ready, TryFutureExt};
use tower::{Layer, Service};

/// The methods the read API answers, as the preflight names them.
const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("GET,HEAD");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

/// Wraps a route so that any origin may read it (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyOriginReads;

impl<S> Layer<S> for AnyOriginReads {
    type Service = AnyOriginReadsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnyOriginReadsService { inner }
    }
}

/// The service [`AnyOriginReads`] wraps a route in.
#[derive(Clone, Debug)]
pub struct AnyOriginReadsService<S> {
    inner: S,
}

type AddOrigin = fn(Response<Body>) -> Response<Body>;

impl<S, B> Service<Request<B>> for AnyOriginReadsService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, MapOk<S::Future, AddOrigin>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::OPTIONS {
            return Either::Left(ready(Ok(preflight())));
        }
        Either::Right(self.inner.call(req).map_ok(add_origin as AddOrigin))
    }
}

fn add_origin(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/read", get(|| async { "read\n" }))
            .layer(AnyOriginReads)
            .route("/write", post(|| async { "written\n" }))
    }

    async fn send(method: Method, path: &str) -> Response<Body> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("origin", "https://explorer.example")
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .unwrap();
        app().oneshot(req).await.unwrap()
    }

    async fn body(response: Response<Body>) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn a_read_is_open_to_any_origin() {
        for method in [Method::GET, Method::HEAD] {
            let response = send(method.clone(), "/read").await;
            assert_eq!(response.status(), StatusCode::OK, "{method}");
            assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert!(!response
                .headers()
                .contains_key(ACCESS_CONTROL_ALLOW_METHODS));
        }
        assert_eq!(body(send(Method::GET, "/read").await).await, b"read\n");
    }

    #[tokio::test]
    async fn a_preflight_is_answered_without_the_route() {
        let response = send(Method::OPTIONS, "/read").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_METHODS], "GET,HEAD");
        assert_eq!(body(response).await, b"");
    }

    #[tokio::test]
    async fn routes_outside_the_layer_are_not_opened() {
        let response = send(Method::POST, "/write").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        let response = send(Method::OPTIONS, "/write").await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}
