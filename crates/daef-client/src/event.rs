//! `GET /v1/jobs/{id}/events`: the job's event stream (Server-Sent Events), read event by event.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::{Error, Result};
use crate::model::{JobInfo, TaskInfo};

/// One event of a job's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// The job as it is now: sent when the stream opens and when its status, message or result
    /// changes.
    Job(JobInfo),
    /// One task as it is now: every task when the stream opens, then each change of its status,
    /// attempt, worker, error or output.
    Task(TaskInfo),
    /// The job reached `Completed`, `Failed` or `Canceled`; the stream ends after this.
    End(JobInfo),
    /// An event this client does not know (a newer gateway); safe to ignore.
    Other {
        /// The event's name.
        event: String,
        /// Its data, as sent.
        data: String,
    },
}

/// An open event stream. Read it with [`JobEvents::next`] until it returns `None`.
#[derive(Debug)]
pub struct JobEvents {
    body: Incoming,
    parser: SseParser,
    idle_timeout: Duration,
    ended: bool,
}

impl JobEvents {
    pub(crate) fn new(body: Incoming, idle_timeout: Duration) -> Self {
        Self {
            body,
            parser: SseParser::default(),
            idle_timeout,
            ended: false,
        }
    }

    /// The next event; `None` once the stream has ended. After [`JobEvent::End`] the next call
    /// returns `None`. A stream that ends without `End` (the gateway restarting) also returns
    /// `None`: open a new one to go on watching. Silence (not even a keep-alive comment) for
    /// longer than the idle timeout is [`Error::Timeout`].
    pub async fn next(&mut self) -> Result<Option<JobEvent>> {
        loop {
            if let Some(raw) = self.parser.next_event() {
                let event = decode(raw)?;
                if matches!(event, JobEvent::End(_)) {
                    self.ended = true;
                }
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let frame = match tokio::time::timeout(self.idle_timeout, self.body.frame()).await {
                Err(_) => return Err(Error::Timeout(self.idle_timeout)),
                Ok(None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Ok(Some(Err(err))) => return Err(Error::Transport(Box::new(err))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.parser.push(&data);
            }
        }
    }
}

fn decode(raw: RawEvent) -> Result<JobEvent> {
    let parse = |what: &str| -> Result<JobInfo> {
        serde_json::from_str(&raw.data).map_err(|e| Error::Decode(format!("{what} event: {e}")))
    };
    Ok(match raw.event.as_str() {
        "job" => JobEvent::Job(parse("job")?),
        "end" => JobEvent::End(parse("end")?),
        "task" => JobEvent::Task(
            serde_json::from_str(&raw.data)
                .map_err(|e| Error::Decode(format!("task event: {e}")))?,
        ),
        _ => JobEvent::Other {
            event: raw.event,
            data: raw.data,
        },
    })
}

/// An event as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub(crate) event: String,
    pub(crate) data: String,
}

/// The `text/event-stream` format (the WHATWG rules this API uses): lines end with LF, CRLF or
/// CR; `:` starts a comment; `field: value` with one optional space; `data` lines join with
/// LF; a blank line dispatches the event, unless it has no data.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: BytesMut,
    event: String,
    data: Vec<String>,
    ready: std::collections::VecDeque<RawEvent>,
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &Bytes) {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A CR at the very end may be the first half of a CRLF still to come.
            if self.buf[end] == b'\r' && end + 1 == self.buf.len() {
                break;
            }
            let line = self.buf.split_to(end);
            let crlf = self.buf[0] == b'\r' && self.buf.get(1) == Some(&b'\n');
            self.buf.advance(if crlf { 2 } else { 1 });
            self.line(&String::from_utf8_lossy(&line));
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            if !self.data.is_empty() {
                let event = std::mem::take(&mut self.event);
                self.ready.push_back(RawEvent {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            self.event.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            // `id` and `retry` matter only to browsers that resume streams; this API replays
            // the current state on every new stream instead.
            _ => {}
        }
    }

    pub(crate) fn next_event(&mut self) -> Option<RawEvent> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&str]) -> Vec<(String, String)> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(&Bytes::copy_from_slice(c.as_bytes()));
            while let Some(e) = p.next_event() {
                out.push((e.event, e.data));
            }
        }
        out
    }

    #[test]
    fn events_comments_and_split_frames() {
        let got = feed(&[
            "event: job\ndata: {\"a\"",
            ":1}\n\n: keep-alive\n\n",
            "event: end\r\ndata: x\r",
            "\n\r\n",
        ]);
        assert_eq!(
            got,
            [
                ("job".into(), "{\"a\":1}".into()),
                ("end".into(), "x".into())
            ]
        );
    }

    #[test]
    fn multi_line_data_default_name_and_empty_events() {
        let got = feed(&["data: one\ndata:two\n\nevent: nothing\n\ndata\n\n"]);
        assert_eq!(
            got,
            [
                ("message".into(), "one\ntwo".into()),
                ("message".into(), String::new())
            ]
        );
    }

    #[test]
    fn unknown_events_are_kept_for_the_caller_to_ignore() {
        let raw = RawEvent {
            event: "progress".into(),
            data: "{}".into(),
        };
        assert_eq!(
            decode(raw).unwrap(),
            JobEvent::Other {
                event: "progress".into(),
                data: "{}".into()
            }
        );
        let bad = RawEvent {
            event: "job".into(),
            data: "{}".into(),
        };
        assert!(matches!(decode(bad), Err(Error::Decode(m)) if m.starts_with("job event")));
    }
}
