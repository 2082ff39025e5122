//! A FIFO queue in memory with the promises of SQS FIFO and the embedded queue: each group in
//! send order with one message of a group in flight at a time, visibility timeouts, receipts
//! that go stale, deduplication within a window, and a dead-letter queue after
//! `max_receive_count` receives. It passes the same queue contract.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::queue::{Delivery, Outgoing, Queue, QueueConsumer, QueueDepth, QueueError};

/// How long a deduplication id is remembered, as SQS does.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
struct Message {
    id: String,
    group: String,
    body: String,
    sent_at: DateTime<Utc>,
    receive_count: u32,
    visible_at: Instant,
    /// The receipt of the latest receive; `None` before the first.
    receipt: Option<String>,
}

#[derive(Default)]
struct State {
    /// In send order.
    messages: Vec<Message>,
    dedup: HashMap<String, Instant>,
    next_id: u64,
}

/// The queue; `dead_letters` (when it has one) is another `MemoryQueue`.
pub struct MemoryQueue {
    state: Mutex<State>,
    visibility_timeout: Duration,
    max_receive_count: u32,
    dead_letters: Option<Arc<MemoryQueue>>,
}

impl MemoryQueue {
    /// A queue whose messages go to a dead-letter queue (see [`MemoryQueue::dead_letters`])
    /// when received more than `max_receive_count` times.
    pub fn new(visibility_timeout: Duration, max_receive_count: u32) -> MemoryQueue {
        MemoryQueue {
            state: Mutex::default(),
            visibility_timeout,
            max_receive_count,
            dead_letters: Some(Arc::new(MemoryQueue::without_dead_letters(
                visibility_timeout,
            ))),
        }
    }

    /// A queue that keeps redelivering (a dead-letter queue itself).
    pub fn without_dead_letters(visibility_timeout: Duration) -> MemoryQueue {
        MemoryQueue {
            state: Mutex::default(),
            visibility_timeout,
            max_receive_count: u32::MAX,
            dead_letters: None,
        }
    }

    pub fn dead_letters(&self) -> Option<Arc<MemoryQueue>> {
        self.dead_letters.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, message: Message) {
        let mut state = self.state();
        state.messages.push(message);
    }

    /// What one receive takes now: per group, its oldest message when none of the group is in
    /// flight and it is visible.
    fn take(&self, max: usize, now: Instant) -> Vec<Delivery> {
        let mut state = self.state();
        let mut blocked: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut i = 0;
        while i < state.messages.len() && out.len() < max {
            let visible = state.messages[i].visible_at <= now;
            let group = state.messages[i].group.clone();
            if blocked.contains(&group) {
                i += 1;
                continue;
            }
            blocked.push(group);
            if !visible {
                i += 1;
                continue;
            }
            if state.messages[i].receive_count >= self.max_receive_count
                && self.dead_letters.is_some()
            {
                // Received as often as allowed: the next receive moves it, as SQS's redrive
                // policy does, and the group's next message may come.
                dead.push(state.messages.remove(i));
                blocked.pop();
                continue;
            }
            state.next_id += 1;
            let receipt = format!("receipt-{}", state.next_id);
            let m = &mut state.messages[i];
            m.receive_count += 1;
            m.visible_at = now + self.visibility_timeout;
            m.receipt = Some(receipt.clone());
            out.push(Delivery {
                message_id: m.id.clone(),
                group: m.group.clone(),
                body: m.body.clone(),
                receipt,
                receive_count: m.receive_count,
                sent_at: Some(m.sent_at),
            });
            i += 1;
        }
        drop(state);
        if let Some(dlq) = &self.dead_letters {
            for mut m in dead {
                m.receive_count = 0;
                m.receipt = None;
                m.visible_at = now;
                dlq.push(m);
            }
        }
        out
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError> {
        let body = serde_json::to_string(&message.command)
            .map_err(|e| QueueError::Malformed(e.to_string()))?;
        let now = Instant::now();
        let mut state = self.state();
        state
            .dedup
            .retain(|_, sent| now.duration_since(*sent) < DEDUP_WINDOW);
        if state.dedup.contains_key(&message.dedup_id) {
            return Ok(());
        }
        state.dedup.insert(message.dedup_id.clone(), now);
        state.next_id += 1;
        let id = format!("message-{}", state.next_id);
        state.messages.push(Message {
            id,
            group: message.command.group(),
            body,
            sent_at: Utc::now(),
            receive_count: 0,
            visible_at: now,
            receipt: None,
        });
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let taken = self.take(max, now);
            if !taken.is_empty() || now >= deadline {
                return Ok(taken);
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.state()
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
        Ok(())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let now = Instant::now();
        if let Some(m) = self
            .state()
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt) && m.visible_at > now)
        {
            m.visible_at = now + delay;
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let now = Instant::now();
        let state = self.state();
        let in_flight = state
            .messages
            .iter()
            .filter(|m| m.receipt.is_some() && m.visible_at > now)
            .count() as u64;
        Ok(QueueDepth {
            waiting: state.messages.len() as u64 - in_flight,
            in_flight,
        })
    }
}
