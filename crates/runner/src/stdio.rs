//! Component stdout/stderr, line-buffered and prefixed with the component id.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Clone)]
pub struct PrefixedOutput {
    prefix: Arc<str>,
    to_stderr: bool,
    buf: Arc<Mutex<Vec<u8>>>,
}

impl PrefixedOutput {
    pub fn new(component: &str, to_stderr: bool) -> Self {
        Self {
            prefix: format!("[{component}] ").into(),
            to_stderr,
            buf: Arc::default(),
        }
    }

    fn emit(&self, lines: &[u8]) {
        let mut out = Vec::with_capacity(lines.len() + 32);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        if self.to_stderr {
            let _ = std::io::stderr().lock().write_all(&out);
        } else {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&out);
            let _ = o.flush();
        }
    }

    fn write_bytes(&self, data: &[u8]) {
        let complete = {
            let mut buf = self.buf.lock().unwrap();
            buf.extend_from_slice(data);
            match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => {
                    let rest = buf.split_off(i + 1);
                    std::mem::replace(&mut *buf, rest)
                }
                // Do not hold on to unbounded partial lines.
                None if buf.len() > 64 * 1024 => std::mem::take(&mut *buf),
                None => return,
            }
        };
        self.emit(&complete);
    }

    /// Emit a trailing partial line, if any.
    pub fn flush_partial(&self) {
        let rest = std::mem::take(&mut *self.buf.lock().unwrap());
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }
}

impl IsTerminal for PrefixedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PrefixedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for PrefixedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}
