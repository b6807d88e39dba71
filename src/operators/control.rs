//! The cluster's control channel: a dataflow of its own, beside the pipeline, that carries a
//! stop request and each worker's "my final progress is written" to every worker of every
//! process.
//!
//! Contract:
//! - [`Control::stop`] on any worker (a signal reached its process) reaches every worker; the
//!   runtime then sets its process's shutdown flag, so every process stops at a safe point,
//!   whichever one was signalled;
//! - [`Control::finished`] announces that this worker wrote its final progress record, and
//!   [`Control::all_finished`] is true once every worker of the cluster has: a worker returns
//!   (and its process exits) only then, so no process leaves while a peer still needs it to
//!   reach its own safe point.
//!
//! The channel is separate from the pipeline's dataflow, so it flows while the pipeline's
//! sources hold their capabilities (they do on shutdown: open windows must not look complete).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::Inspect;
use timely::dataflow::InputHandleVec;

/// One message on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Message {
    /// Stop at the next safe point.
    Stop,
    /// This worker has written its final progress record.
    Finished(usize),
}

/// A worker's end of the channel.
pub struct Control {
    input: InputHandleVec<u64, Message>,
    received: Rc<RefCell<Vec<Message>>>,
    peers: usize,
    index: usize,
    stop_sent: bool,
    stop_seen: bool,
    finished: BTreeSet<usize>,
}

impl Control {
    /// Builds the channel on this worker (every worker must, in the same order relative to
    /// its other dataflows).
    pub fn new(worker: &mut timely::worker::Worker) -> Control {
        let received: Rc<RefCell<Vec<Message>>> = Rc::default();
        let sink = Rc::clone(&received);
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Message>();
            stream
                .broadcast()
                .inspect(move |m| sink.borrow_mut().push(*m));
            input
        });
        Control {
            input,
            received,
            peers: worker.peers(),
            index: worker.index(),
            stop_sent: false,
            stop_seen: false,
            finished: BTreeSet::new(),
        }
    }

    /// Asks every worker to stop (once).
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.stop_sent, true) {
            self.input.send(Message::Stop);
            self.input.flush();
        }
    }

    /// Announces that this worker has written its final progress record.
    pub fn finished(&mut self) {
        self.input.send(Message::Finished(self.index));
        self.input.flush();
    }

    /// Takes what arrived; true once a stop request has (from any worker, this one included).
    pub fn stop_requested(&mut self) -> bool {
        self.drain();
        self.stop_seen
    }

    /// Whether every worker of the cluster has announced [`Control::finished`].
    pub fn all_finished(&mut self) -> bool {
        self.drain();
        self.finished.len() == self.peers
    }

    fn drain(&mut self) {
        for m in self.received.borrow_mut().drain(..) {
            match m {
                Message::Stop => self.stop_seen = true,
                Message::Finished(w) => {
                    self.finished.insert(w);
                }
            }
        }
    }
}
