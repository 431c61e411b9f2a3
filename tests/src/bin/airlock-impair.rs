#![forbid(unsafe_code)]
//! `airlock-impair`: put a lossy, noisy link between airlock-sender and airlock-receiver.
//!
//! UDP: point the sender at `--listen`, the relay forwards to `--target` (the receiver).
//! Serial (`--serial`): creates two pseudo-terminals and prints their paths; configure the
//! sender with the first and the receiver with the second.
//! Counters are printed every `--stats-every` seconds and on Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use airlock_tests::impair::{GilbertElliott, ImpairConfig};
use airlock_tests::serial_pty::{SerialPath, SerialPathConfig};
use airlock_tests::udp_relay::{RelayConfig, RelayStats, UdpRelay};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "airlock-impair",
    about = "Seeded fault injection between airlock-sender and airlock-receiver (UDP relay or pty serial line)",
    after_help = "Example: 10% loss plus bursts of ~8 datagrams starting with probability 0.001:\n  \
                  airlock-impair --listen 127.0.0.1:7000 --target 127.0.0.1:7001 --loss 0.1 --burst-start 0.001 --burst-len 8"
)]
struct Args {
    /// Address the sender sends to (UDP mode).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Address the receiver listens on (UDP mode).
    #[arg(long, default_value = "127.0.0.1:7001")]
    target: SocketAddr,
    /// Allow addresses other than loopback (for a rehearsal rig; never in tests).
    #[arg(long)]
    allow_non_loopback: bool,
    /// Serial mode: create two pseudo-terminals instead of relaying UDP.
    #[arg(long)]
    serial: bool,
    /// Random seed: the same seed gives the same impairments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Independent loss probability per datagram (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Gilbert-Elliott: probability per datagram that a loss burst starts (0 = no bursts).
    #[arg(long, default_value_t = 0.0)]
    burst_start: f64,
    /// Gilbert-Elliott: mean burst length in datagrams.
    #[arg(long, default_value_t = 8.0)]
    burst_len: f64,
    /// Gilbert-Elliott: loss probability inside a burst.
    #[arg(long, default_value_t = 1.0)]
    burst_loss: f64,
    /// Duplication probability per datagram.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a datagram is held back and overtaken.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How many datagrams overtake a held-back one.
    #[arg(long, default_value_t = 3)]
    reorder_depth: usize,
    /// Probability that a datagram gets bits flipped in one byte.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Seconds between counter lines (0: only at exit).
    #[arg(long, default_value_t = 5)]
    stats_every: u64,
}

impl Args {
    fn impair(&self) -> ImpairConfig {
        let burst = (self.burst_start > 0.0).then(|| GilbertElliott {
            loss_in_bad: self.burst_loss,
            ..GilbertElliott::bursts(self.burst_start, self.burst_len)
        });
        ImpairConfig {
            seed: self.seed,
            loss: self.loss,
            burst,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_depth: self.reorder_depth,
            corrupt: self.corrupt,
        }
    }
}

/// Something that can report counters.
enum Running {
    Udp(UdpRelay),
    Serial(SerialPath),
}

impl Running {
    fn stats(&self) -> RelayStats {
        match self {
            Running::Udp(r) => r.stats(),
            Running::Serial(s) => s.stats(),
        }
    }
}

async fn start(args: &Args) -> anyhow::Result<Running> {
    let impair = args.impair();
    if args.serial {
        let path = SerialPath::start(SerialPathConfig {
            impair,
            ..SerialPathConfig::default()
        })?;
        println!(
            "serial line up: sender device {}  ->  receiver device {}",
            path.sender_device().display(),
            path.receiver_device().display()
        );
        return Ok(Running::Serial(path));
    }
    let relay = UdpRelay::start(RelayConfig {
        listen: args.listen,
        impair,
        allow_non_loopback: args.allow_non_loopback,
        ..RelayConfig::to(args.target)
    })
    .await?;
    println!(
        "relaying UDP {} -> {} with {:?}",
        relay.local_addr(),
        relay.target(),
        args.impair()
    );
    Ok(Running::Udp(relay))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let running = start(&args).await?;
    let every = Duration::from_secs(args.stats_every.max(1));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick(), if args.stats_every > 0 => println!("{}", running.stats()),
        }
    }
    println!("final: {}", running.stats());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.impair().validate() {
        eprintln!("airlock-impair: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlock-impair: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock-impair: {e:#}");
            ExitCode::FAILURE
        }
    }
}
