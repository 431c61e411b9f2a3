//! Stand-ins for either half, built from the protocol crate alone: a [`Chain`] that seals
//! one sender's frames, a [`LinkSender`] that sends them as datagrams, an [`Opener`] that
//! decodes and opens what arrives and a [`LinkReceiver`] that feeds it from a socket. With them
//! the harness (and a test of one real binary) can be exercised without the other binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use airlock_protocol::link::{
    BlockDecoder, BlockEncoder, BlockPacker, DecoderConfig, LinkError, LinkParams, LinkStats,
};
use airlock_protocol::message::{Body, ENVELOPE_VERSION, Envelope};
use airlock_protocol::replay::ReplayState;
use airlock_protocol::seal::{
    Freshness, Opened, SealError, SealedFrame, Sealer, SignedFrame, open,
};
use airlock_protocol::trust::TrustStore;
use tokio::net::UdpSocket;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("link codec: {0}")]
    Link(#[from] LinkError),
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
}

pub use crate::ops::unix_now;

/// One sender's hash chain: each frame gets the next seq and the hash of the one before.
pub struct Chain {
    pub sealer: Sealer,
    /// The seq of the last frame made (0 before the first).
    pub seq: u64,
    /// The hash of the last frame made (zeros before the first).
    pub prev: [u8; 32],
}

impl Chain {
    pub fn new(sealer: Sealer) -> Self {
        Self {
            sealer,
            seq: 0,
            prev: [0; 32],
        }
    }

    /// An envelope of this sender that follows the last frame made.
    pub fn envelope(&self, seq: u64, body: Body, issued_at: u64) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            sender_kid: self.sealer.signer_kid().to_owned(),
            seq,
            prev: self.prev,
            issued_at,
            body,
        }
    }

    /// Signs the next frame (the Sign1 an auditor reads); returns its envelope too.
    pub fn sign_next(
        &mut self,
        body: Body,
        issued_at: u64,
    ) -> Result<(Envelope, SignedFrame), SealError> {
        let envelope = self.envelope(self.seq + 1, body, issued_at);
        let signed = self.sealer.sign(&envelope)?;
        self.seq += 1;
        self.prev = signed.hash;
        Ok((envelope, signed))
    }

    /// Seals (signs and encrypts) the next frame.
    pub fn seal_next(&mut self, body: Body, issued_at: u64) -> Result<SealedFrame, SealError> {
        let sealed = self
            .sealer
            .seal(&self.envelope(self.seq + 1, body, issued_at))?;
        self.seq += 1;
        self.prev = sealed.hash;
        Ok(sealed)
    }
}

/// Seals envelopes with the next seq and the chain's `prev`, packs and FEC-encodes them and
/// sends the datagrams to `target` (e.g. a [`crate::udp_relay::UdpRelay`]).
pub struct LinkSender {
    socket: UdpSocket,
    target: SocketAddr,
    chain: Chain,
    packer: BlockPacker,
    encoder: BlockEncoder,
    datagrams_sent: u64,
}

impl LinkSender {
    pub async fn new(
        target: SocketAddr,
        sealer: Sealer,
        session_id: u64,
        params: &LinkParams,
    ) -> Result<Self, PeerError> {
        Ok(Self {
            socket: UdpSocket::bind("127.0.0.1:0").await?,
            target,
            chain: Chain::new(sealer),
            packer: BlockPacker::new(params.max_block_bytes, params.linger),
            encoder: BlockEncoder::new(session_id, params)?,
            datagrams_sent: 0,
        })
    }

    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams_sent
    }

    /// The seq the next envelope will get.
    pub fn next_seq(&self) -> u64 {
        self.chain.seq + 1
    }

    /// Seals `body` as the next frame of the chain and queues it; returns its seq.
    pub async fn send(&mut self, body: Body) -> Result<u64, PeerError> {
        let sealed = self.chain.seal_next(body, unix_now())?;
        self.send_sealed(&sealed.sealed).await?;
        Ok(self.chain.seq)
    }

    /// Queues an already sealed frame (e.g. a replay or a forgery).
    pub async fn send_sealed(&mut self, sealed: &[u8]) -> Result<(), PeerError> {
        if let Some(block) = self.packer.push(sealed, Instant::now()) {
            self.send_block(&block).await?;
        }
        Ok(())
    }

    /// Sends the partly filled block now.
    pub async fn flush(&mut self) -> Result<(), PeerError> {
        if let Some(block) = self.packer.flush() {
            self.send_block(&block).await?;
        }
        Ok(())
    }

    async fn send_block(&mut self, block: &[u8]) -> Result<(), PeerError> {
        for d in self.encoder.encode(block)? {
            self.socket.send_to(&d, self.target).await?;
            self.datagrams_sent += 1;
            // Loopback has no pacing: let the relay and the receiver keep up.
            if self.datagrams_sent.is_multiple_of(32) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }
}

/// A receiver in miniature, without I/O: datagrams in, blocks decoded, frames opened,
/// the replay window kept; rejections counted by reason.
pub struct Opener {
    decoder: BlockDecoder,
    trust: TrustStore,
    freshness: Freshness,
    replay: ReplayState,
    accepted: Vec<Opened>,
    rejected: BTreeMap<&'static str, u64>,
    link_errors: BTreeMap<&'static str, u64>,
}

impl Opener {
    pub fn new(trust: TrustStore, freshness: Freshness) -> Self {
        Self {
            decoder: BlockDecoder::new(DecoderConfig::default()),
            trust,
            freshness,
            replay: ReplayState::new(),
            accepted: Vec::new(),
            rejected: BTreeMap::new(),
            link_errors: BTreeMap::new(),
        }
    }

    /// The frames accepted so far, in arrival order.
    pub fn accepted(&self) -> &[Opened] {
        &self.accepted
    }

    /// Frames rejected by `open`, by reason label.
    pub fn rejected(&self) -> &BTreeMap<&'static str, u64> {
        &self.rejected
    }

    /// Datagrams or blocks refused by the link codec, by reason label.
    pub fn link_errors(&self) -> &BTreeMap<&'static str, u64> {
        &self.link_errors
    }

    pub fn link_stats(&self) -> &LinkStats {
        self.decoder.stats()
    }

    /// Handles one datagram: decode, open, accept.
    pub fn push(&mut self, datagram: &[u8]) {
        let frames = match self.decoder.push_datagram(datagram) {
            Ok(frames) => frames,
            Err(e) => {
                *self.link_errors.entry(e.reason()).or_default() += 1;
                return;
            }
        };
        for f in frames {
            match open(&f, &self.trust, &self.freshness, unix_now(), &self.replay) {
                Ok(opened) => {
                    let kid = opened.signer_kid.clone();
                    if self.replay.accept(&kid, opened.envelope.seq).is_ok() {
                        self.accepted.push(opened);
                    }
                }
                Err(e) => *self.rejected.entry(e.reason()).or_default() += 1,
            }
        }
    }
}

/// Receives datagrams on a loopback socket into an [`Opener`].
pub struct LinkReceiver {
    socket: UdpSocket,
    opener: Opener,
}

impl LinkReceiver {
    pub async fn bind(trust: TrustStore) -> Result<Self, PeerError> {
        Ok(Self {
            socket: UdpSocket::bind("127.0.0.1:0").await?,
            opener: Opener::new(trust, Freshness::default()),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, PeerError> {
        Ok(self.socket.local_addr()?)
    }

    pub fn accepted(&self) -> &[Opened] {
        self.opener.accepted()
    }

    /// Frames rejected by `open`, by reason label.
    pub fn rejected(&self) -> &BTreeMap<&'static str, u64> {
        self.opener.rejected()
    }

    /// Datagrams or blocks refused by the link codec, by reason label.
    pub fn link_errors(&self) -> &BTreeMap<&'static str, u64> {
        self.opener.link_errors()
    }

    pub fn link_stats(&self) -> &LinkStats {
        self.opener.link_stats()
    }

    /// Handles one datagram: decode, open, accept.
    pub fn push(&mut self, datagram: &[u8]) {
        self.opener.push(datagram);
    }

    /// Receives until `done(self)` holds, or nothing arrived for `idle`, or `max` passed.
    /// Returns whether `done` held.
    pub async fn run_until(
        &mut self,
        done: impl Fn(&Self) -> bool,
        idle: Duration,
        max: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        let mut buf = vec![0u8; 65_536];
        while !done(self) {
            let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let d = buf.get(..n).unwrap_or_default().to_vec();
                    self.push(&d);
                }
                _ => return done(self),
            }
        }
        true
    }
}
