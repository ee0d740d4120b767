//! Body adapters between clients and backends.
//!
//! - [`RequestBody`] replays the bytes already read (to check the first message's size) and
//!   reports no size hint: tonic-web passes the base64 length of gRPC-web-text bodies on, which
//!   would make the backend connection fail with an HTTP/2 protocol error.
//! - [`ResponseBody`] turns a backend that fails mid-stream into clean `UNAVAILABLE` trailers,
//!   instead of a reset stream (HTTP/2 clients would see `INTERNAL`, gRPC-web clients a reply
//!   without a status).

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A request body: the chunks already read, then the rest.
    pub struct RequestBody<B> {
        read: VecDeque<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> RequestBody<B> {
    /// A body that yields `read` before `rest`.
    pub fn new(read: VecDeque<Bytes>, rest: B) -> Self {
        Self { read, rest }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if let Some(chunk) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        this.rest
            .poll_frame(cx)
            .map_err(|e| Status::from_error(e.into()))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The length announced by the first gRPC message header (1 flag byte, 4 length bytes) in
/// `chunks`, once 5 bytes are there.
pub fn first_message_length(chunks: &VecDeque<Bytes>) -> Option<usize> {
    let mut header = [0u8; 5];
    let mut filled = 0;
    for chunk in chunks {
        let mut chunk = chunk.clone();
        while filled < 5 && chunk.has_remaining() {
            header[filled] = chunk.get_u8();
            filled += 1;
        }
        if filled == 5 {
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            return usize::try_from(length).ok();
        }
    }
    None
}

pin_project_lite::pin_project! {
    /// A backend's response body whose failure becomes `UNAVAILABLE` trailers.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        done: bool,
    }
}

impl<B> ResponseBody<B> {
    /// Wraps a backend body.
    pub fn new(inner: B) -> Self {
        Self { inner, done: false }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => {
                *this.done = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                *this.done = true;
                tracing::warn!(%error, "backend failed mid-response");
                let mut trailers = HeaderMap::new();
                let status = Status::new(Code::Unavailable, "the backend went away; retry");
                if status.add_header(&mut trailers).is_err() {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_header_is_found_across_chunks() {
        let chunks: VecDeque<Bytes> = [&[0u8, 0, 0][..], &[1, 2], &[9, 9]]
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect();
        assert_eq!(first_message_length(&chunks), Some(0x0102));
        let short: VecDeque<Bytes> = [Bytes::from_static(&[0, 0, 0])].into();
        assert_eq!(first_message_length(&short), None);
    }
}
