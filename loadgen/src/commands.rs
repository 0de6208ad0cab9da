//! The subcommands: set up (data set, recipients, registration), run, report.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::churn::table::ChurnTable;
use crate::churn::{self as churning, Changers, ChurnConfig, ChurnReport, ReportInputs};
use crate::cli::{
    ChurnArgs, Command, DataArgs, DatasetArgs, HiccupArgs, IdentityArg, LoadArgs, MessageArgs,
    MixedArgs, RawArgs, SipArgs, TransportArg,
};
use crate::dataset::{Dataset, DatasetParams};
use crate::engine::pacer::{Pacing, Schedule};
use crate::engine::recipient::{RecipientConfig, RecipientStats, Recipients};
use crate::engine::{self, AuthConfig, Contacts, Identity, RunConfig, RunOutput};
use crate::kernel::UdpCounters;
use crate::report::{Generator, KernelUdp, PhaseSummary, Report, results};
use crate::sip::Transport;
use crate::sys;
use crate::target::parse_loopback;
use crate::workload::{KindMix, MessageMix, Mode, Workload};
use crate::xcap::{XcapClient, XcapRoot};

/// Most requests one run may send.
const MAX_COUNT: u64 = 1_000_000_000;
/// Longest run.
const MAX_DURATION_S: u64 = 24 * 3600;
/// Bound on the REGISTER/PUBLISH setup phases.
const SETUP_DURATION: Duration = Duration::from_secs(120);

/// Runs a command; Ok(true) means the verdict passed.
pub fn execute(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Dataset(args) => dataset(&args).map(|()| true),
        Command::Message(args) => sip_run(
            &args.load,
            &args.data,
            &args.sip,
            RunKind::Message(message_mix(&args)?),
        ),
        Command::Register(args) => sip_run(&args.load, &args.data, &args.sip, RunKind::Register),
        Command::Publish(args) => sip_run(&args.load, &args.data, &args.sip, RunKind::Publish),
        Command::Mixed(args) => mixed(&args),
        Command::Churn(args) => churn(&args),
        Command::Raw(args) => raw(&args),
        Command::Hiccup(args) => hiccup(&args).map(|()| true),
    }
}

fn hiccup(args: &HiccupArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=600).contains(&args.duration_s),
        "--duration-s must be in 1..=600"
    );
    let h = crate::hiccup::probe(Duration::from_secs(args.duration_s));
    println!("{}", crate::hiccup::summary(&h));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&h)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

enum RunKind<'a> {
    Message(MessageMix),
    Churn(MessageMix, &'a ChurnArgs),
    Mixed(MessageMix, KindMix),
    Register,
    Publish,
}

fn dataset(args: &DatasetArgs) -> anyhow::Result<()> {
    let set = load_dataset(&args.data)?;
    set.write_dir(&args.out)?;
    let blocked: usize = (1..=set.user_count())
        .filter_map(|n| set.user(n))
        .map(|u| u.blocked.len())
        .sum();
    println!(
        "wrote {} users ({} blocked entries, seed {}) to {}/xcap.jsonl and {}/policy.jsonl",
        set.user_count(),
        blocked,
        set.params.seed,
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

fn load_dataset(data: &DataArgs) -> anyhow::Result<Dataset> {
    if let Some(path) = data.dataset.as_ref().or(data.policy_file.as_ref()) {
        return Dataset::read_policy(path);
    }
    let mut params = DatasetParams::new(data.users, data.seed);
    params.domain.clone_from(&data.domain);
    params.max_blocked = data.max_blocked;
    params.zipf_s = data.zipf_s;
    params.isb_share = data.isb_share;
    params.unregistered_share = data.unregistered_share;
    Dataset::generate(params)
}

fn message_mix(args: &MessageArgs) -> anyhow::Result<MessageMix> {
    let mix = MessageMix {
        blocked_share: args.blocked_share,
        unknown_share: args.to_unknown_share,
        unregistered_share: args.to_unregistered_share,
    };
    for share in [mix.blocked_share, mix.unknown_share, mix.unregistered_share] {
        ensure!((0.0..=1.0).contains(&share), "shares must be in [0, 1]");
    }
    ensure!(
        mix.blocked_share + mix.unknown_share + mix.unregistered_share <= 1.0,
        "shares add up to more than 1"
    );
    Ok(mix)
}

fn parse_mix(text: &str) -> anyhow::Result<KindMix> {
    let mut mix = KindMix {
        message: 0,
        register: 0,
        publish: 0,
    };
    for part in text.split(',') {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("mix entry {part:?} is not name=weight"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("weight in {part:?}"))?;
        match name.trim() {
            "message" => mix.message = weight,
            "register" => mix.register = weight,
            "publish" => mix.publish = weight,
            other => bail!("unknown request kind {other:?} in --mix"),
        }
    }
    ensure!(
        mix.message + mix.register + mix.publish > 0,
        "--mix weights are all zero"
    );
    Ok(mix)
}

fn mixed(args: &MixedArgs) -> anyhow::Result<bool> {
    let kinds = parse_mix(&args.mix)?;
    let m = &args.message;
    sip_run(
        &m.load,
        &m.data,
        &m.sip,
        RunKind::Mixed(message_mix(m)?, kinds),
    )
}

fn churn(args: &ChurnArgs) -> anyhow::Result<bool> {
    parse_loopback(&args.message.load.target)?;
    let Some(url) = &args.xcap else {
        bail!(
            "churn changes blocked lists through the GLMS while MESSAGEs flow: it needs --xcap http://127.0.0.1:PORT/xcap-root"
        );
    };
    let root = XcapRoot::parse(url)?;
    probe_xcap(&root, url, &format!("sip:u1@{}", args.message.data.domain))?;
    ensure!(
        args.changes_per_s.is_finite()
            && args.changes_per_s > 0.0
            && args.changes_per_s <= 100_000.0,
        "--changes-per-s must be in (0, 100000]"
    );
    ensure!(
        (1..=1_000_000).contains(&args.churn_pairs),
        "--churn-pairs must be in 1..=1000000"
    );
    ensure!(
        (0.0..=1.0).contains(&args.churn_share),
        "--churn-share must be in [0, 1]"
    );
    ensure!(
        (1..=64).contains(&args.xcap_connections),
        "--xcap-connections must be in 1..=64"
    );
    ensure!(
        (50..=1_000_000).contains(&args.probe_interval_us),
        "--probe-interval-us must be in 50..=1000000"
    );
    ensure!(
        (10..=60_000).contains(&args.probe_timeout_ms),
        "--probe-timeout-ms must be in 10..=60000"
    );
    ensure!(
        (1..=3600).contains(&args.policy_wait_s),
        "--policy-wait-s must be in 1..=3600"
    );
    ensure!(
        args.message.sip.identity == IdentityArg::Pai,
        "churn probes as a trusted peer: it needs --identity pai"
    );
    ensure!(
        !args.message.sip.no_register,
        "churn registers the recipients itself (and waits for their policies): drop --no-register"
    );
    ensure!(
        args.message.load.rate.is_some(),
        "churn runs the MESSAGE load in open loop: give --rate"
    );
    let m = &args.message;
    sip_run(
        &m.load,
        &m.data,
        &m.sip,
        RunKind::Churn(message_mix(m)?, args),
    )
}

/// Asks the GLMS for its xcap-caps document (as `identity`, asserted the way an aggregation
/// proxy does, SPEC G3); an error means the server lacks a GLMS.
fn probe_xcap(root: &XcapRoot, url: &str, identity: &str) -> anyhow::Result<()> {
    let mut client = XcapClient::new(root.clone(), Duration::from_secs(2));
    let response = client
        .request("GET", &root.caps_path(), Some(identity), None)
        .with_context(|| format!("no GLMS answering at {url}"))?;
    ensure!(
        response.status == 200,
        "{url} does not serve xcap-caps (HTTP {}): the server lacks a GLMS",
        response.status
    );
    Ok(())
}

fn transport(arg: TransportArg) -> Transport {
    match arg {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    }
}

/// Turns the load flags into a run configuration for `default_count` requests at most.
fn run_config(
    load: &LoadArgs,
    sip: Option<&SipArgs>,
    default_count: Option<u64>,
) -> anyhow::Result<RunConfig> {
    let target =
        parse_loopback(&load.target).with_context(|| format!("--target {}", load.target))?;
    ensure!(
        (1..=MAX_DURATION_S).contains(&load.duration_s),
        "--duration-s must be in 1..={MAX_DURATION_S}"
    );
    ensure!(
        (1..=60_000).contains(&load.timeout_ms),
        "--timeout-ms must be in 1..=60000"
    );
    ensure!(
        (1..=64).contains(&load.threads),
        "--threads must be in 1..=64"
    );
    ensure!(
        (1..=4096).contains(&load.sockets),
        "--sockets must be in 1..=4096"
    );
    let duration = Duration::from_secs(load.duration_s);
    let pacing = match (load.rate, load.window) {
        (Some(rate), _) => {
            ensure!(
                rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0,
                "--rate must be in (0, 1e7]"
            );
            Pacing::Open { rate_per_s: rate }
        }
        (None, window) => {
            let window = window.unwrap_or(16);
            ensure!(
                (1..=100_000).contains(&window),
                "--window must be in 1..=100000"
            );
            Pacing::Closed { window }
        }
    };
    let mut count = load.count.or(default_count).unwrap_or(match pacing {
        Pacing::Open { rate_per_s } => {
            Schedule::new(rate_per_s).due_within(duration.as_nanos() as u64)
        }
        Pacing::Closed { .. } => 10_000_000,
    });
    count = count.min(MAX_COUNT);
    ensure!(count > 0, "--count must be positive");
    let sip = sip.cloned();
    Ok(RunConfig {
        target,
        transport: transport(load.transport),
        pacing,
        count,
        duration,
        timeout: Duration::from_millis(load.timeout_ms),
        threads: load.threads,
        sockets: load.sockets.max(load.threads),
        senders_per_socket: load.senders_per_socket,
        identity: match sip.as_ref().map(|s| s.identity) {
            Some(IdentityArg::From) => Identity::From,
            _ => Identity::Pai,
        },
        auth: AuthConfig {
            username_template: sip
                .as_ref()
                .map_or("{user}".into(), |s| s.auth_user.clone()),
            password_template: sip
                .as_ref()
                .map_or("{user}".into(), |s| s.auth_password.clone()),
        },
        register_expires_s: sip.as_ref().map_or(3600, |s| s.register_expires_s),
        publish_expires_s: sip.as_ref().map_or(3600, |s| s.publish_expires_s),
        body: body(sip.as_ref().map_or(64, |s| s.body_bytes)),
        raw_size: 200,
        sockbuf_bytes: load.sockbuf_bytes.clamp(64 << 10, 256 << 20),
        max_inflight: load.max_inflight.clamp(1024, 1 << 24),
        local_ip: local_ip_for(target),
    })
}

fn local_ip_for(target: SocketAddr) -> IpAddr {
    match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

fn body(bytes: usize) -> Vec<u8> {
    let text = b"loadgen says hello. ";
    (0..bytes.min(8_000))
        .map(|i| text[i % text.len()])
        .collect()
}

/// Prints a `\r` progress line when stderr is a terminal; nothing otherwise.
fn progress_printer(label: &'static str) -> impl FnMut(u64, u64) {
    let tty = std::io::stderr().is_terminal();
    let mut previous = 0u64;
    move |sent, completed| {
        if tty {
            eprint!(
                "\r{label}: sent {sent} completed {completed} ({} /s)    ",
                completed.saturating_sub(previous)
            );
            previous = completed;
        }
    }
}

fn end_progress() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

fn sip_run(
    load: &LoadArgs,
    data: &DataArgs,
    sip: &SipArgs,
    kind: RunKind<'_>,
) -> anyhow::Result<bool> {
    ensure!(
        [603, 403, 202].contains(&sip.block_code),
        "--block-code must be 603, 403 or 202 (D1)"
    );
    let dataset = Arc::new(load_dataset(data)?);
    let mix = match &kind {
        RunKind::Message(mix) | RunKind::Mixed(mix, _) | RunKind::Churn(mix, _) => *mix,
        _ => MessageMix {
            blocked_share: 0.0,
            unknown_share: 0.0,
            unregistered_share: 0.0,
        },
    };
    let base = Workload::new(Mode::Message, Arc::clone(&dataset), mix, sip.block_code);
    let registered = base.registered_users().to_vec();
    ensure!(
        !registered.is_empty() || matches!(kind, RunKind::Message(_)),
        "the data set has no registered users"
    );
    let (mode, name, default_count) = match &kind {
        RunKind::Message(_) => (Mode::Message, "message", None),
        RunKind::Churn(..) => (Mode::Message, "churn", None),
        RunKind::Mixed(_, kinds) => (Mode::Mixed(*kinds), "mixed", None),
        RunKind::Register => (
            Mode::Register(registered.clone()),
            "register",
            Some(registered.len() as u64),
        ),
        RunKind::Publish => (
            Mode::Publish(registered.clone()),
            "publish",
            Some(registered.len() as u64),
        ),
    };
    let cfg = run_config(load, Some(sip), default_count)?;
    let churn_args = match &kind {
        RunKind::Churn(_, args) => Some(*args),
        _ => None,
    };
    let mut workload = Workload::new(mode, Arc::clone(&dataset), mix, sip.block_code);
    let mut table = None;
    let mut churn_bound = Duration::ZERO;
    if let Some(args) = churn_args {
        let probe_bound = Duration::from_millis(args.probe_timeout_ms);
        // Windows that closed this long ago can no longer overlap a MESSAGE in flight.
        let prune_after = (cfg.timeout + probe_bound) * 2 + Duration::from_secs(1);
        let built = Arc::new(ChurnTable::build(
            &dataset,
            args.churn_pairs,
            sip.block_code,
            prune_after.as_nanos() as u64,
        ));
        ensure!(
            !built.is_empty(),
            "the data set offers no pair to churn (no registered user without ISB)"
        );
        workload = workload.with_churn(Arc::clone(&built), args.churn_share);
        table = Some(built);
        churn_bound = Duration::from_secs(args.policy_wait_s) + probe_bound * 2;
    }
    let workload = Arc::new(workload);
    let run_id = engine::new_run_id();
    let recipients = Recipients::start(
        RecipientConfig {
            transport: cfg.transport,
            ip: cfg.local_ip,
            sockets: sip.recipient_sockets,
            base_port: sip.recipient_port,
            sockbuf_bytes: cfg.sockbuf_bytes,
            max_lifetime: cfg.duration
                + cfg.timeout
                + SETUP_DURATION * 2
                + Duration::from_millis(sip.settle_ms)
                + churn_bound
                + Duration::from_secs(10),
        },
        Arc::clone(&workload),
        run_id,
    )?;
    let contacts = recipients.contacts.clone();
    let mut setup = Vec::new();
    let needs_registration = matches!(
        kind,
        RunKind::Message(_) | RunKind::Mixed(..) | RunKind::Publish | RunKind::Churn(..)
    );
    if !sip.no_register && needs_registration && !registered.is_empty() {
        let out = setup_phase(
            &cfg,
            sip,
            Mode::Register(registered.clone()),
            &dataset,
            &contacts,
            "register",
        )?;
        setup.push(PhaseSummary::of("register", &out));
        let isb = base.isb_users();
        if !isb.is_empty() && !matches!(kind, RunKind::Publish) {
            let out = setup_phase(
                &cfg,
                sip,
                Mode::Publish(isb),
                &dataset,
                &contacts,
                "publish-isb",
            )?;
            setup.push(PhaseSummary::of("publish-isb", &out));
        }
        if let Some(failed) = setup.iter().find(|p| p.failed > 0) {
            let _ = recipients.finish(cfg.transport);
            bail!(
                "setup phase {} failed for {} of {} requests (responses {:?}); is the server at {} running and does it accept this generator as a trusted peer?",
                failed.name,
                failed.failed,
                failed.sent,
                failed.responses_by_code,
                cfg.target
            );
        }
    }
    let prepared = match (churn_args, &table) {
        (Some(args), Some(table)) => {
            match prepare_churn(args, table, &cfg, sip, run_id, &base, &registered) {
                Ok(prepared) => {
                    setup.push(prepared.phase.clone());
                    Some(prepared)
                }
                Err(error) => {
                    let _ = recipients.finish(cfg.transport);
                    return Err(error);
                }
            }
        }
        _ => None,
    };
    if sip.settle_ms > 0 {
        std::thread::sleep(Duration::from_millis(sip.settle_ms.min(600_000)));
    }
    let offered = match cfg.pacing {
        Pacing::Open { rate_per_s } => Some(rate_per_s),
        Pacing::Closed { .. } => None,
    };
    let mut config = serde_json::json!({
        "target": cfg.target.to_string(),
        "transport": cfg.transport,
        "pacing": cfg.pacing,
        "count": cfg.count,
        "duration_s": cfg.duration.as_secs(),
        "timeout_ms": cfg.timeout.as_millis() as u64,
        "threads": cfg.threads,
        "sockets": cfg.sockets,
        "senders_per_socket": cfg.senders_per_socket,
        "identity": cfg.identity,
        "block_code": sip.block_code,
        "message_mix": mix,
        "dataset": dataset.params,
        "contacts": contacts,
        "no_register": sip.no_register,
    });
    if let (Some(args), Some(prepared)) = (churn_args, &prepared) {
        config["churn"] = serde_json::json!({
            "xcap": format!("http://{}{}", prepared.cfg.root.addr, prepared.cfg.root.path),
            "changes_per_s": args.changes_per_s,
            "churn_pairs": args.churn_pairs,
            "churn_share": args.churn_share,
            "xcap_connections": args.xcap_connections,
            "probe_interval_us": args.probe_interval_us,
            "probe_timeout_ms": args.probe_timeout_ms,
            "probe_transport": cfg.transport,
        });
    }
    let kernel_before = UdpCounters::read();
    let process_before = sys::process_cpu();
    let changers = match (&prepared, &table) {
        (Some(prepared), Some(table)) => Some(Changers::start(
            Arc::clone(&prepared.cfg),
            Arc::clone(table),
        )?),
        _ => None,
    };
    let out = engine::run(
        cfg.clone(),
        workload,
        contacts,
        run_id,
        progress_printer(name),
    );
    let change_stats = changers.map(Changers::finish).transpose();
    let out = out?;
    let change_stats = change_stats?;
    end_progress();
    let kernel_after = UdpCounters::read();
    let recipient_stats = recipients.finish(cfg.transport)?;
    let process_cpu = sys::process_cpu().since(process_before);
    let mut results = results(&out, offered);
    results.add_recipient_findings(&recipient_stats);
    let mut verdict = results.verdict(load.max_unanswered);
    let churn = match (prepared, &table, &change_stats) {
        (Some(prepared), Some(table), Some(stats)) => {
            let report = ChurnReport::new(ReportInputs {
                cfg: &prepared.cfg,
                table,
                stats,
                wait: prepared.wait,
                pairs_reconciled: prepared.reconciled,
                churn_pair_messages: out.stats.churn_pair_messages,
                in_propagation: out.stats.in_propagation,
                probe_deliveries: recipient_stats.probe_deliveries,
            });
            verdict.reasons.extend(report.verdict_reasons());
            verdict.pass = verdict.reasons.is_empty();
            Some(report)
        }
        _ => None,
    };
    let report = Report {
        command: name.to_owned(),
        loadgen_version: env!("CARGO_PKG_VERSION"),
        config,
        setup,
        generator: generator(&out, Some(&recipient_stats), process_cpu, cfg.threads),
        results,
        recipients: Some(recipient_stats),
        kernel_udp: KernelUdp {
            delta: kernel_after.delta(&kernel_before),
            before: kernel_before,
            after: kernel_after,
        },
        churn,
        verdict,
    };
    finish(&report, load)
}

/// What `churn` sets up between registration and the load.
struct PreparedChurn {
    cfg: Arc<ChurnConfig>,
    reconciled: usize,
    wait: churning::PolicyWait,
    phase: PhaseSummary,
}

/// Reads the churned pairs' states back from the GLMS, then waits until the server knows every
/// registered user's policy (D6: MESSAGEs stop getting 480).
fn prepare_churn(
    args: &ChurnArgs,
    table: &ChurnTable,
    cfg: &RunConfig,
    sip: &SipArgs,
    run_id: u32,
    base: &Workload,
    registered: &[u32],
) -> anyhow::Result<PreparedChurn> {
    let url = args.xcap.as_deref().unwrap_or_default();
    let churn_cfg = Arc::new(ChurnConfig {
        root: XcapRoot::parse(url)?,
        changes_per_s: args.changes_per_s,
        duration: cfg.duration,
        connections: args.xcap_connections,
        probe_interval: Duration::from_micros(args.probe_interval_us),
        probe_bound: Duration::from_millis(args.probe_timeout_ms),
        http_timeout: Duration::from_secs(5),
        transport: cfg.transport,
        target: cfg.target,
        local_ip: cfg.local_ip,
        run_id,
        domain: base.dataset.params.domain.clone(),
        body: cfg.body.clone(),
        block_code: sip.block_code,
    });
    let reconciled = churning::reconcile(&churn_cfg, table)?;
    let wait = churning::wait_for_policies(
        &churn_cfg,
        registered,
        |user| base.allowed_sender_of(user),
        Duration::from_secs(args.policy_wait_s),
    )?;
    ensure!(
        wait.known == wait.users,
        "the server did not come to know every policy within --policy-wait-s {} ({} of {} known; {:?}; answers {:?})",
        args.policy_wait_s,
        wait.known,
        wait.users,
        wait.unresolved,
        wait.responses_by_code
    );
    let phase = PhaseSummary {
        name: "policy-wait".to_owned(),
        sent: wait.users as u64 + wait.retries + wait.lost,
        ok: wait.known as u64,
        failed: (wait.users - wait.known) as u64,
        responses_by_code: wait.responses_by_code.clone(),
        latency_us: wait.known_after_us.clone(),
    };
    Ok(PreparedChurn {
        cfg: churn_cfg,
        reconciled,
        wait,
        phase,
    })
}

fn setup_phase(
    cfg: &RunConfig,
    sip: &SipArgs,
    mode: Mode,
    dataset: &Arc<Dataset>,
    contacts: &Contacts,
    label: &'static str,
) -> anyhow::Result<RunOutput> {
    let count = match &mode {
        Mode::Register(users) | Mode::Publish(users) => users.len() as u64,
        _ => 0,
    };
    let workload = Arc::new(Workload::new(
        mode,
        Arc::clone(dataset),
        MessageMix {
            blocked_share: 0.0,
            unknown_share: 0.0,
            unregistered_share: 0.0,
        },
        sip.block_code,
    ));
    let setup_cfg = RunConfig {
        pacing: Pacing::Closed {
            window: sip.setup_window.clamp(1, 10_000),
        },
        count,
        duration: SETUP_DURATION,
        threads: 1,
        sockets: 1,
        ..cfg.clone()
    };
    let out = engine::run(
        setup_cfg,
        workload,
        contacts.clone(),
        engine::new_run_id(),
        progress_printer(label),
    )?;
    end_progress();
    Ok(out)
}

fn generator(
    out: &RunOutput,
    recipients: Option<&RecipientStats>,
    process_cpu: sys::CpuTime,
    threads: usize,
) -> Generator {
    let recipient_cpu = recipients.map(|r| r.cpu).unwrap_or_default();
    let total = out.cpu.plus(recipient_cpu).total_us();
    Generator {
        threads,
        sender_cpu: out.cpu,
        recipient_cpu,
        process_cpu,
        cpu_us_per_request: if out.stats.sent > 0 {
            (total as f64 / out.stats.sent as f64 * 100.0).round() / 100.0
        } else {
            0.0
        },
        sender_socket_drops: out.sender_socket_drops,
        recipient_socket_drops: recipients.map_or(0, |r| r.socket_drops),
    }
}

fn finish(report: &Report, load: &LoadArgs) -> anyhow::Result<bool> {
    print!("{}", report.summary());
    if let Some(path) = &load.json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.verdict.pass)
}

fn raw(args: &RawArgs) -> anyhow::Result<bool> {
    ensure!(
        args.load.transport == TransportArg::Udp,
        "raw speaks UDP datagrams only"
    );
    ensure!(
        (crate::engine::raw::HEADER_BYTES..=sys::DATAGRAM_BYTES).contains(&args.size),
        "--size must be in 24..=9216"
    );
    let mut cfg = run_config(&args.load, None, None)?;
    cfg.raw_size = args.size;
    let mut params = DatasetParams::new(2, 0);
    params.max_blocked = 0;
    let dataset = Arc::new(Dataset::generate(params)?);
    let workload = Arc::new(Workload::new(
        Mode::Raw,
        dataset,
        MessageMix {
            blocked_share: 0.0,
            unknown_share: 0.0,
            unregistered_share: 0.0,
        },
        603,
    ));
    let offered = match cfg.pacing {
        Pacing::Open { rate_per_s } => Some(rate_per_s),
        Pacing::Closed { .. } => None,
    };
    let config = serde_json::json!({
        "target": cfg.target.to_string(), "pacing": cfg.pacing, "count": cfg.count, "duration_s": cfg.duration.as_secs(),
        "timeout_ms": cfg.timeout.as_millis() as u64, "threads": cfg.threads, "sockets": cfg.sockets, "size": args.size,
    });
    let kernel_before = UdpCounters::read();
    let process_before = sys::process_cpu();
    let contacts = Contacts {
        ip: cfg.local_ip,
        ports: Vec::new(),
    };
    let out = engine::run(
        cfg.clone(),
        workload,
        contacts,
        engine::new_run_id(),
        progress_printer("raw"),
    )?;
    end_progress();
    let kernel_after = UdpCounters::read();
    let results = results(&out, offered);
    let verdict = results.verdict(args.load.max_unanswered);
    let report = Report {
        command: "raw".to_owned(),
        loadgen_version: env!("CARGO_PKG_VERSION"),
        config,
        setup: Vec::new(),
        generator: generator(
            &out,
            None,
            sys::process_cpu().since(process_before),
            cfg.threads,
        ),
        results,
        recipients: None,
        kernel_udp: KernelUdp {
            delta: kernel_after.delta(&kernel_before),
            before: kernel_before,
            after: kernel_after,
        },
        churn: None,
        verdict,
    };
    finish(&report, &args.load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parsing() {
        assert_eq!(
            parse_mix("message=8,register=1,publish=1").ok(),
            Some(KindMix {
                message: 8,
                register: 1,
                publish: 1
            })
        );
        assert!(parse_mix("message=1,invite=2").is_err());
        assert!(parse_mix("message=0").is_err());
        assert!(parse_mix("message").is_err());
    }

    #[test]
    fn body_has_requested_size() {
        assert_eq!(body(64).len(), 64);
        assert_eq!(body(0).len(), 0);
        assert_eq!(body(1_000_000).len(), 8_000);
    }
}
