//! A streamed request: the pipeline runs in its own task and its events
//! (routing, each segment's pieces, the answer) come out as a stream;
//! dropping the stream (the client went away) aborts the task, which drops
//! every segment's call and so cancels the generation on every node.
//! [`InOrder`] turns the events into text deltas in prompt order, shared
//! by the gRPC `AskStream` and the HTTP API's server-sent events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use netmoe_proto::v1::{self, ask_event::Event};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::{AskError, Pipeline};

/// Events buffered between the pipeline and a slow reader; beyond it the
/// segments wait (a slow reader slows only its own request).
pub const EVENT_BUFFER: usize = 64;

/// The events of one streamed request; the last item is the answer
/// (`Event::Done`) or the refusal.
pub struct AskEvents {
    rx: mpsc::Receiver<v1::AskEvent>,
    result: Option<oneshot::Receiver<Result<v1::AskResponse, AskError>>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    first_piece: bool,
    pipeline: Arc<Pipeline>,
}

impl Drop for AskEvents {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            tracing::info!("stream reader gone; cancelling the request's segments");
        }
        self.task.abort();
    }
}

/// Starts answering `req` and returns its events.
pub fn ask_stream(pipeline: Arc<Pipeline>, req: v1::AskRequest) -> AskEvents {
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let (done_tx, done_rx) = oneshot::channel();
    let p = pipeline.clone();
    let task = tokio::spawn(async move {
        let r = p.ask_events(req, Some(tx)).await;
        let _ = done_tx.send(r);
    });
    AskEvents {
        rx,
        result: Some(done_rx),
        task,
        started: Instant::now(),
        first_piece: false,
        pipeline,
    }
}

impl Stream for AskEvents {
    type Item = Result<v1::AskEvent, AskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Every event is sent before the result: drain them first.
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => {
                if !this.first_piece && matches!(ev.event, Some(Event::Piece(_))) {
                    this.first_piece = true;
                    this.pipeline
                        .metrics
                        .observe_first_piece(this.started.elapsed().as_secs_f64());
                }
                return Poll::Ready(Some(Ok(ev)));
            }
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(result) = this.result.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(result).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.result = None;
                Poll::Ready(Some(match r {
                    Ok(Ok(resp)) => Ok(v1::AskEvent {
                        event: Some(Event::Done(resp)),
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(AskError::AllFailed("the request's task ended".into())),
                }))
            }
        }
    }
}

/// Orders segment text for a reader: segment 0's text flows as it is
/// written; a later segment's text is held until every earlier segment is
/// over, then flushed and followed live. Passages are separated as the
/// stitched story separates them. Text of a failed attempt that was not
/// yet shown is dropped; text already shown stays (a reader cannot
/// un-read it) and the retry's text follows it after a separator.
#[derive(Debug, Default)]
pub struct InOrder {
    held: Vec<String>,
    finished: Vec<bool>,
    next: usize,
    shown_any: bool,
    live_shown: bool,
}

/// Between passages, as fusion's stitch joins them.
pub const PASSAGE_SEPARATOR: &str = "\n\n";

impl InOrder {
    /// Text to show now for `ev`, in order (empty: nothing yet).
    pub fn push(&mut self, ev: &v1::AskEvent) -> String {
        let mut out = String::new();
        match &ev.event {
            Some(Event::Routed(r)) => {
                let n = r.segments.len();
                self.held = vec![String::new(); n];
                self.finished = vec![false; n];
            }
            Some(Event::Started(s)) => {
                let i = s.index as usize;
                if i == self.next && self.live_shown {
                    // A retry of the segment being shown: its text
                    // follows after a separator.
                    self.live_shown = false;
                } else if let Some(h) = self.held.get_mut(i) {
                    h.clear();
                }
            }
            Some(Event::Piece(p)) => {
                let i = p.index as usize;
                if i == self.next {
                    self.show(&p.text, &mut out);
                } else if let Some(h) = self.held.get_mut(i) {
                    h.push_str(&p.text);
                }
            }
            Some(Event::Finished(f)) => {
                let i = f.index as usize;
                if let Some(done) = self.finished.get_mut(i) {
                    *done = true;
                }
                if !f.error.is_empty()
                    && let Some(h) = self.held.get_mut(i)
                {
                    h.clear();
                }
                while self.next < self.finished.len() && self.finished[self.next] {
                    self.next += 1;
                    self.live_shown = false;
                    if let Some(h) = self.held.get_mut(self.next) {
                        let text = std::mem::take(h);
                        self.show(&text, &mut out);
                    }
                }
            }
            Some(Event::Done(_)) | None => {}
        }
        out
    }

    fn show(&mut self, text: &str, out: &mut String) {
        if text.is_empty() {
            return;
        }
        if self.shown_any && !self.live_shown {
            out.push_str(PASSAGE_SEPARATOR);
        }
        out.push_str(text);
        self.shown_any = true;
        self.live_shown = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(e: Event) -> v1::AskEvent {
        v1::AskEvent { event: Some(e) }
    }
    fn routed(n: usize) -> v1::AskEvent {
        ev(Event::Routed(v1::AskRouted {
            segments: vec![v1::SegmentRoute::default(); n],
            ..Default::default()
        }))
    }
    fn piece(i: u32, t: &str) -> v1::AskEvent {
        ev(Event::Piece(v1::SegmentPiece {
            index: i,
            text: t.into(),
        }))
    }
    fn started(i: u32, attempt: u32) -> v1::AskEvent {
        ev(Event::Started(v1::SegmentStarted {
            index: i,
            attempt,
            ..Default::default()
        }))
    }
    fn finished(i: u32, error: &str) -> v1::AskEvent {
        ev(Event::Finished(v1::SegmentFinished {
            index: i,
            error: error.into(),
            ..Default::default()
        }))
    }

    fn run(events: &[v1::AskEvent]) -> (String, Vec<String>) {
        let mut o = InOrder::default();
        let deltas: Vec<String> = events.iter().map(|e| o.push(e)).collect();
        (deltas.concat(), deltas)
    }

    #[test]
    fn later_segments_wait_for_earlier_ones_and_then_flow() {
        let (all, deltas) = run(&[
            routed(2),
            started(0, 1),
            started(1, 1),
            piece(1, "B1"),
            piece(0, "A1"),
            piece(0, " A2"),
            finished(0, ""),
            piece(1, " B2"),
            finished(1, ""),
        ]);
        assert_eq!(all, "A1 A2\n\nB1 B2");
        assert_eq!(deltas[3], "", "segment 1 is held while 0 runs");
        assert_eq!(deltas[4], "A1");
        assert_eq!(deltas[6], "\n\nB1", "held text is flushed when 0 ends");
        assert_eq!(deltas[7], " B2", "then it flows live");
    }

    #[test]
    fn a_failed_attempt_not_yet_shown_is_dropped() {
        let (all, _) = run(&[
            routed(2),
            started(1, 1),
            piece(1, "lost"),
            started(1, 2),
            piece(1, "kept"),
            started(0, 1),
            piece(0, "A"),
            finished(1, ""),
            finished(0, ""),
        ]);
        assert_eq!(all, "A\n\nkept");
    }

    #[test]
    fn a_failed_segment_shows_nothing_and_does_not_block_the_rest() {
        let (all, _) = run(&[
            routed(3),
            piece(2, "C"),
            piece(1, "never"),
            finished(1, "down"),
            piece(0, "A"),
            finished(0, ""),
            finished(2, ""),
        ]);
        assert_eq!(all, "A\n\nC");
    }

    #[test]
    fn a_retry_of_the_live_segment_follows_what_was_shown() {
        let (all, _) = run(&[
            routed(1),
            started(0, 1),
            piece(0, "half"),
            started(0, 2),
            piece(0, "whole"),
            finished(0, ""),
        ]);
        assert_eq!(all, "half\n\nwhole");
    }
}
