//! The `weir` binary: parse the command line, set up logging, run.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use weir::config::{Cli, Command, LogFormat};
use weir::spec::DataflowSpec;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = match cli.command {
        Some(Command::Check {
            files,
            against,
            keyspace,
        }) => return check(&files, against.as_deref(), &keyspace),
        Some(Command::Generate {
            out,
            topic,
            generator,
        }) => return generate(&out, &topic, &generator),
        Some(Command::Produce(args)) => return produce(&args),
        Some(Command::Run(run)) => *run,
        None => cli.run,
    };
    init_logging(run.log_format);
    let config = match run.resolve() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    install_signals(
        &shutdown,
        "weir: stopping at the next safe point (signal again to exit at once; that is safe too)",
    );
    match weir::app::run(config, shutdown) {
        Ok(summary) if summary.stopped => {
            eprintln!("weir: stopped cleanly; {}", summary.stats.summary());
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            eprintln!("weir: input ended; {}", summary.stats.summary());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn produce(args: &weir::config::ProduceArgs) -> ExitCode {
    init_logging(args.log_format);
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    install_signals(
        &shutdown,
        "weir produce: stopping; waiting for deliveries (signal again to exit at once)",
    );
    match weir::producer::run(config, shutdown) {
        Ok(summary) if summary.produced == 0 => {
            let last = match summary.last_error.as_str() {
                "" => String::new(),
                e => format!("; last error: {e}"),
            };
            eprintln!("weir produce: nothing was produced ({summary}){last}");
            ExitCode::FAILURE
        }
        Ok(summary) => {
            eprintln!("weir produce: done; {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// First signal: set `shutdown`; second: exit at once.
fn install_signals(shutdown: &Arc<AtomicBool>, first: &'static str) {
    let signals = Arc::new(AtomicUsize::new(0));
    let shutdown = Arc::clone(shutdown);
    let installed = ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("{first}");
            shutdown.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        eprintln!("weir: cannot install the signal handler: {e}");
    }
}

fn fail(e: &weir::Error) -> ExitCode {
    eprintln!("weir: {e}");
    ExitCode::from(e.exit_code() as u8)
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    // Weir's lifecycle events (start, partitions assigned, first write, progress written once a
    // minute, shutdown) at info; the clients' own chatter (every refused connection, retried by
    // the client) is off by default. WEIR_LOG=debug,rdkafka=info shows it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| "warn,weir=info,librdkafka=off,rdkafka=off,scylla=off".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    quiet_cluster_panics();
}

/// When a connection to another process of the cluster breaks (it stopped or died), timely's
/// network threads panic, and then every worker touching the queues they shared panics
/// ("poisoned"). The runtime turns that into one error line; these panics become a warning
/// line and a debug line instead of a screen of backtraces. Every other panic (a bug) is
/// printed as Rust prints it.
fn quiet_cluster_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        use weir::runtime::{cluster_panic, panic_message, ClusterPanic};
        let message = panic_message(info.payload());
        let thread = std::thread::current().name().unwrap_or("").to_string();
        match cluster_panic(message) {
            _ if !thread.starts_with("timely:") => default(info),
            Some(ClusterPanic::ConnectionBroke) => tracing::warn!(thread, "{message}"),
            Some(ClusterPanic::Poisoned) => tracing::debug!(thread, "{message}"),
            None => default(info),
        }
    }));
}

fn check(files: &[std::path::PathBuf], against: Option<&str>, keyspace: &str) -> ExitCode {
    let mut ok = true;
    for file in files {
        match DataflowSpec::load(file) {
            Ok(spec) if against.is_some() => {
                let store = against.unwrap_or_default();
                let report = weir::config::run::against(store, keyspace, file)
                    .and_then(|choice| weir::app::check_against(&spec, choice));
                match report {
                    Ok((lines, refused)) => {
                        println!("{}: ok (dataflow {})", file.display(), spec.name);
                        for line in lines {
                            println!("{line}");
                        }
                        ok &= !refused;
                    }
                    Err(e) => return fail(&e),
                }
            }
            Ok(spec) => {
                let reads = match spec.join.as_deref() {
                    None => format!("topic {}", spec.topic),
                    Some(join) => {
                        let inputs: Vec<String> = join
                            .inputs
                            .iter()
                            .map(|i| {
                                format!(
                                    "{} ({} of topic {})",
                                    i.name,
                                    i.kind.as_str(),
                                    i.spec.topic
                                )
                            })
                            .collect();
                        let stream = &join.inputs[join.left];
                        let kind = match join.kind {
                            weir::spec::JoinKind::AsOf => "as-of".to_string(),
                            weir::spec::JoinKind::Interval { lower_ms, upper_ms } => {
                                format!("interval [{lower_ms} ms, {upper_ms} ms]")
                            }
                        };
                        format!(
                            "inputs {}, {} {kind} join on {}.{}",
                            inputs.join(" and "),
                            if join.inner { "an inner" } else { "a left" },
                            stream.name,
                            stream.spec.fields[join.on].name
                        )
                    }
                };
                println!(
                    "{}: ok (dataflow {}, {reads}, {} fields, {} windows, {} dimensions, {} aggregates)",
                    file.display(),
                    spec.name,
                    spec.fields.len(),
                    spec.windows.len(),
                    spec.dimensions.len(),
                    spec.aggregates.len()
                )
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn generate(out: &std::path::Path, topic: &str, args: &weir::config::GeneratorArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(c) if c.count.is_some() => c,
        Ok(_) => return fail(&weir::Error::Config("generate needs --count".into())),
        Err(e) => return fail(&e),
    };
    // The topic's generator (clap allows only the generated topics).
    let config = config.for_topic(topic).unwrap_or(config);
    match config.write_files(out) {
        Ok(()) => {
            println!(
                "wrote {} {topic} messages in {} partitions to {}",
                config.count.unwrap_or(0),
                config.partitions,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&weir::Error::Input(format!("{}: {e}", out.display()))),
    }
}
