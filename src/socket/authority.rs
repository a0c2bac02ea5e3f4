//! Serving gRPC clients whose `:authority` h2 refuses. gRPC C-core clients (Python
//! grpcio, C++, Ruby) send a unix socket's path %-encoded as the authority, grpc-java and
//! gocsi's `csc` the raw path; h2, under tonic, answers either with RST_STREAM before lvmd
//! sees the call, and offers no option to relax it. On a unix socket the authority names
//! nothing, so each connection is read up to its first header block: with a valid
//! authority (tonic and Go clients send `localhost`) the connection is passed through
//! untouched from then on; with an invalid one, every header block of that connection is
//! decoded and written again with `:authority: localhost`.
//!
//! Hand-written because no crate does this: HPACK decoding is loona-hpack's; what is here
//! is HTTP/2 framing (RFC 9113 §4, §6.2, §6.10) and HPACK literals (RFC 7541 §6.2.2). The
//! blocks are written again as literals never indexed, which add nothing to h2's HPACK
//! table, so the rewritten stream needs no table kept in step with h2's: only the
//! client's table is followed, by the decoder.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 endpoint accepts frames of this size (SETTINGS_MAX_FRAME_SIZE's least
/// value), so rewritten blocks are cut to it whatever h2 advertised.
const MAX_FRAME: usize = 16_384;
/// What a rewritten connection's requests carry instead.
const SERVED_AS: &[u8] = b"localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first header block.
    Sniff,
    /// The first block's authority was refused by h2's rules: every block rewritten.
    Rewrite,
    /// Untouched from here on (a valid authority, or bytes h2 must judge itself).
    Passthrough,
}

/// A header block being collected (a HEADERS frame and its CONTINUATIONs).
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as read, forwarded as they are when nothing needs rewriting.
    original: Vec<u8>,
}

/// The client-to-server half of a connection, as a pure byte transformer.
pub(crate) struct Rewriter {
    mode: Mode,
    preface_seen: bool,
    pending: Vec<u8>,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            mode: Mode::Sniff,
            preface_seen: false,
            pending: Vec::new(),
            block: None,
            decoder: loona_hpack::Decoder::new(),
        }
    }
}

impl Rewriter {
    fn passthrough(&self) -> bool {
        self.mode == Mode::Passthrough && self.pending.is_empty()
    }

    /// Takes bytes read from the client and appends what h2 is to read to `out`.
    /// An error means the connection cannot go on (a block the client's own table
    /// cannot decode, after earlier ones were rewritten).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.pending.extend_from_slice(input);
        loop {
            if self.mode == Mode::Passthrough {
                out.append(&mut self.pending);
                return Ok(());
            }
            if !self.preface_seen {
                if self.pending.len() < PREFACE.len() {
                    return Ok(());
                }
                if &self.pending[..PREFACE.len()] != PREFACE {
                    // Not HTTP/2 prior knowledge: h2 says so itself.
                    self.mode = Mode::Passthrough;
                    continue;
                }
                out.extend(self.pending.drain(..PREFACE.len()));
                self.preface_seen = true;
            }
            if self.pending.len() < FRAME_HEADER {
                return Ok(());
            }
            let len = u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]]);
            if len as usize > MAX_FRAME {
                // Past the frame size lvmd's servers advertise (h2's default): h2 ends
                // the connection on its header, so nothing is held back for it.
                self.give_up(Vec::new(), out);
                continue;
            }
            let total = FRAME_HEADER + len as usize;
            if self.pending.len() < total {
                return Ok(());
            }
            let frame: Vec<u8> = self.pending.drain(..total).collect();
            self.frame(frame, out)?;
        }
    }

    /// The client is gone: what is held back (a partial frame or block) goes to h2 as
    /// it was read.
    pub(crate) fn end_of_input(&mut self, out: &mut Vec<u8>) {
        self.give_up(Vec::new(), out);
        out.append(&mut self.pending);
    }

    /// Gives up on rewriting: what is held goes to h2 as read, and h2 judges it (a
    /// malformed frame, a protocol error: h2's answer is the right one).
    fn give_up(&mut self, held: Vec<u8>, out: &mut Vec<u8>) {
        if let Some(b) = self.block.take() {
            out.extend_from_slice(&b.original);
        }
        out.extend_from_slice(&held);
        self.mode = Mode::Passthrough;
    }

    fn frame(&mut self, frame: Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(flags, payload) else {
                    if self.mode == Mode::Rewrite {
                        return Err(invalid("a malformed HEADERS frame"));
                    }
                    self.give_up(frame, out);
                    return Ok(());
                };
                let fragment = fragment.to_vec();
                self.block = Some(Block {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment,
                    original: frame,
                });
            }
            (CONTINUATION, Some(b)) if b.stream_id == stream_id => {
                b.fragment.extend_from_slice(payload);
                b.original.extend_from_slice(&frame);
            }
            (_, Some(_)) => {
                // RFC 9113 §6.10: nothing may come between a block's frames.
                if self.mode == Mode::Rewrite {
                    return Err(invalid("a frame inside a header block"));
                }
                self.give_up(frame, out);
                return Ok(());
            }
            (_, None) => {
                out.extend_from_slice(&frame);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("a block being collected");
            self.finish(block, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, block: Block, out: &mut Vec<u8>) -> io::Result<()> {
        let headers = match self.decoder.decode(&block.fragment) {
            Ok(h) => h,
            Err(e) if self.mode == Mode::Sniff => {
                // h2's table is in step with the client's until now: it fails the same way.
                tracing::debug!("a header block lvmd cannot decode ({e:?}); left to h2");
                self.block = Some(block);
                self.give_up(Vec::new(), out);
                return Ok(());
            }
            Err(e) => return Err(invalid(&format!("an undecodable header block ({e:?})"))),
        };
        let refused = headers
            .iter()
            .find(|(name, _)| name == b":authority")
            .filter(|(_, value)| http::uri::Authority::try_from(value.as_slice()).is_err())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
        if self.mode == Mode::Sniff {
            match &refused {
                None => {
                    out.extend_from_slice(&block.original);
                    self.mode = Mode::Passthrough;
                    return Ok(());
                }
                Some(authority) => {
                    tracing::debug!(
                        authority,
                        "the client's :authority is not one h2 accepts; this connection's \
                         requests are served as localhost"
                    );
                    self.mode = Mode::Rewrite;
                }
            }
        }
        let headers = headers.into_iter().map(|(name, value)| {
            if name == b":authority" && refused.is_some() {
                (name, SERVED_AS.to_vec())
            } else {
                (name, value)
            }
        });
        write_block(&block, &literal_block(headers), out);
        Ok(())
    }
}

/// A HEADERS payload's priority fields and block fragment, padding taken off; `None`
/// when the lengths do not fit (RFC 9113 §6.2).
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let (pad, mut rest) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (pad as usize, rest)
    } else {
        (0, payload)
    };
    let priority = if flags & PRIORITY != 0 {
        let fields: [u8; 5] = rest.get(..5)?.try_into().ok()?;
        rest = &rest[5..];
        Some(fields)
    } else {
        None
    };
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

/// The headers as HPACK literals never indexed (RFC 7541 §6.2.3), names and values
/// as plain strings.
fn literal_block(headers: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x10);
        for s in [&name, &value] {
            loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, &mut block)
                .expect("writing to a Vec");
            block.extend_from_slice(s);
        }
    }
    block
}

/// `fragment` as a HEADERS frame and as many CONTINUATIONs as it takes.
fn write_block(block: &Block, fragment: &[u8], out: &mut Vec<u8>) {
    let priority = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    let first = fragment.len().min(MAX_FRAME - priority.len());
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    let (head, mut rest) = fragment.split_at(first);
    frame_header(
        out,
        priority.len() + head.len(),
        HEADERS,
        flags,
        rest.is_empty(),
        block.stream_id,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = tail;
        frame_header(
            out,
            chunk.len(),
            CONTINUATION,
            0,
            rest.is_empty(),
            block.stream_id,
        );
        out.extend_from_slice(chunk);
    }
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, last: bool, stream_id: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(if last { flags | END_HEADERS } else { flags });
    out.extend_from_slice(&stream_id.to_be_bytes());
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("closing a client connection whose headers were being rewritten: {what}"),
    )
}

/// A client connection as h2 is to read it (see the module's comment); writes go
/// straight through.
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_at: usize,
    chunk: Box<[u8]>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            out: Vec::new(),
            out_at: 0,
            chunk: vec![0; MAX_FRAME].into_boxed_slice(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.passthrough() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut read = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.rewriter.end_of_input(&mut this.out);
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let filled = read.filled().len();
            let chunk = std::mem::take(&mut this.chunk);
            let fed = this.rewriter.feed(&chunk[..filled], &mut this.out);
            this.chunk = chunk;
            fed?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = tonic::transport::server::UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;
    /// A decoded header block: stream id, headers, END_STREAM.
    type Blocks = Vec<(u32, Headers, bool)>;
    /// Any other frame: type, stream id, payload.
    type Frames = Vec<(u8, u32, Vec<u8>)>;

    fn request(authority: &str, path: &str) -> Headers {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "grpc-c/44.0.0 (linux; chttp2)"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// Frames as a client writes them: `block` cut into a HEADERS frame (padded, with
    /// priority, when asked) and CONTINUATIONs of `cut` bytes.
    fn headers_frames(
        stream_id: u32,
        block: &[u8],
        cut: usize,
        padded: bool,
        end_stream: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunks: Vec<&[u8]> = block.chunks(cut).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut payload = Vec::new();
            let mut flags = 0;
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            if i == 0 {
                if end_stream {
                    flags |= END_STREAM;
                }
                if padded {
                    flags |= PADDED | PRIORITY;
                    payload.push(3);
                    payload.extend_from_slice(&[0, 0, 0, 0, 15]);
                }
            }
            payload.extend_from_slice(chunk);
            if i == 0 && padded {
                payload.extend_from_slice(&[0, 0, 0]);
            }
            frame_header(&mut out, payload.len(), kind, flags, i == last, stream_id);
            out.extend_from_slice(&payload);
        }
        out
    }

    fn data_frame(stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(&mut out, payload.len(), 0x0, END_STREAM, false, stream_id);
        out.extend_from_slice(payload);
        out
    }

    /// A client's stream: the preface, SETTINGS, then for each request its header block
    /// (encoded by an indexing HPACK encoder, as C-core's is) and a DATA frame.
    fn client_stream(requests: &[Headers], cut: usize, padded: bool) -> Vec<u8> {
        let mut enc = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        frame_header(&mut out, 0, 0x4, 0, false, 0);
        for (i, headers) in requests.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            let block = enc.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
            out.extend(headers_frames(id, &block, cut, padded, false));
            out.extend(data_frame(id, &[0, 0, 0, 0, 0]));
        }
        out
    }

    /// What h2 would see: the frames, each header block decoded by one decoder for the
    /// whole connection (as h2's is). Checks every frame is whole and within MAX_FRAME.
    fn parse(stream: &[u8]) -> (Blocks, Frames) {
        assert!(stream.starts_with(PREFACE));
        let mut rest = &stream[PREFACE.len()..];
        let mut dec = loona_hpack::Decoder::new();
        let (mut blocks, mut others) = (Vec::new(), Vec::new());
        let mut open: Option<(u32, Vec<u8>, bool)> = None;
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            assert!(len <= MAX_FRAME, "a frame of {len} bytes");
            let (kind, flags) = (rest[3], rest[4]);
            let id = u32::from_be_bytes(rest[5..9].try_into().unwrap());
            let payload = &rest[9..9 + len];
            rest = &rest[9 + len..];
            match kind {
                HEADERS => {
                    assert!(open.is_none());
                    let (_, frag) = headers_payload(flags, payload).unwrap();
                    open = Some((id, frag.to_vec(), flags & END_STREAM != 0));
                }
                CONTINUATION => {
                    let o = open.as_mut().unwrap();
                    assert_eq!(o.0, id);
                    o.1.extend_from_slice(payload);
                }
                _ => {
                    assert!(open.is_none());
                    others.push((kind, id, payload.to_vec()));
                    continue;
                }
            }
            if flags & END_HEADERS != 0 {
                let (id, frag, end) = open.take().unwrap();
                blocks.push((id, dec.decode(&frag).unwrap(), end));
            }
        }
        assert!(open.is_none());
        (blocks, others)
    }

    fn through(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            r.feed(piece, &mut out).unwrap();
        }
        r.end_of_input(&mut out);
        out
    }

    #[test]
    fn a_valid_authority_leaves_the_connection_byte_for_byte() {
        let reqs = vec![request("localhost", "/a"), request("localhost", "/b")];
        let input = client_stream(&reqs, 7, true);
        for step in [1, 5, 9, 64, input.len()] {
            assert_eq!(through(&input, step), input, "read {step} bytes at a time");
        }
    }

    #[test]
    fn a_refused_authority_is_served_as_localhost_on_every_request() {
        for bad in [
            "%2Frun%2Flvmd%2Flvmd.sock",
            "/var/lib/kubelet/plugins/lvmd/csi.sock",
        ] {
            assert!(http::uri::Authority::try_from(bad).is_err(), "{bad}");
            // Three requests: the second and third reuse the client's table entries.
            let reqs = vec![request(bad, "/a"), request(bad, "/b"), request(bad, "/a")];
            for (cut, padded) in [(4096, false), (5, true)] {
                let input = client_stream(&reqs, cut, padded);
                for step in [1, 13, input.len()] {
                    let (blocks, others) = parse(&through(&input, step));
                    assert_eq!(blocks.len(), 3);
                    for ((id, got, end), want) in blocks.iter().zip(&reqs) {
                        let mut want = want.clone();
                        want[3].1 = b"localhost".to_vec();
                        assert_eq!(got, &want, "stream {id}");
                        assert!(!end);
                    }
                    // SETTINGS and the DATA frames pass as they were.
                    assert_eq!(others.len(), 4);
                    assert_eq!(others[1], (0x0, 1, vec![0, 0, 0, 0, 0]));
                }
            }
        }
    }

    #[test]
    fn a_rewritten_block_longer_than_a_frame_is_cut_into_continuations() {
        let bad = "%2Frun%2Flvmd.sock";
        let mut big = request(bad, "/a");
        big.push((b"x-long".to_vec(), vec![b'v'; 40_000]));
        let input = client_stream(&[big.clone(), request(bad, "/b")], MAX_FRAME, false);
        let (blocks, _) = parse(&through(&input, 1000));
        big[3].1 = b"localhost".to_vec();
        assert_eq!(blocks[0].1, big);
        assert_eq!(blocks[1].1[3].1, b"localhost");
    }

    #[test]
    fn end_stream_and_priority_survive_the_rewrite() {
        let mut enc = loona_hpack::Encoder::new();
        let req = request("%2Fs", "/a");
        let block = enc.encode(req.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        input.extend(headers_frames(1, &block, 8, true, true));
        let out = through(&input, 3);
        let first = &out[PREFACE.len()..];
        assert_eq!(first[3], HEADERS);
        assert_eq!(first[4], END_STREAM | PRIORITY | END_HEADERS);
        assert_eq!(&first[9..14], &[0, 0, 0, 0, 15]);
        let (blocks, _) = parse(&out);
        assert!(blocks[0].2);
    }

    #[test]
    fn what_h2_must_judge_reaches_it_unchanged() {
        // Not an HTTP/2 preface.
        let junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nmore bytes here".to_vec();
        assert_eq!(through(&junk, 4), junk);
        // A frame inside a header block, before any rewriting.
        let mut enc = loona_hpack::Encoder::new();
        let req = request("localhost", "/a");
        let block = enc.encode(req.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        let frames = headers_frames(1, &block, 10, false, false);
        let first_len = FRAME_HEADER + 10;
        input.extend_from_slice(&frames[..first_len]);
        input.extend(data_frame(1, b"x"));
        input.extend_from_slice(&frames[first_len..]);
        assert_eq!(through(&input, 7), input);
        // Padding longer than the frame.
        let mut bad = PREFACE.to_vec();
        frame_header(&mut bad, 2, HEADERS, PADDED, true, 1);
        bad.extend_from_slice(&[9, 0x82]);
        assert_eq!(through(&bad, 1), bad);
    }

    #[test]
    fn a_frame_past_the_frame_size_reaches_h2_at_once() {
        // After a rewritten request, a frame header claiming 1 MiB: forwarded as soon as
        // its header is read, not held until a megabyte has come.
        let mut input = client_stream(&[request("%2Fs", "/a")], 4096, false);
        let rewritten = through(&input, input.len());
        frame_header(&mut input, 1 << 20, 0x0, 0, false, 1);
        input.extend_from_slice(b"partial");
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        r.feed(&input, &mut out).unwrap();
        assert_eq!(&out[..rewritten.len()], &rewritten[..]);
        assert_eq!(&out[rewritten.len()..], &input[input.len() - 16..]);
        assert!(r.passthrough());
    }

    #[test]
    fn a_broken_block_after_a_rewrite_closes_the_connection() {
        let mut input = client_stream(&[request("%2Fs", "/a")], 4096, false);
        // An index far past both tables.
        frame_header(&mut input, 2, HEADERS, 0, true, 3);
        input.extend_from_slice(&[0xff, 0x70]);
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        let err = r.feed(&input, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
