//! The Kafka path's ceiling: a raw rdkafka consume loop that reads every partition of a topic
//! from the beginning to its high watermark (as of start), with the client settings Weir's
//! source uses and nothing else: no parsing, no dataflow. `THREADS` consumers each take every
//! `THREADS`-th partition, like Weir's workers. Weir's Kafka throughput is reported as a ratio
//! to this, on the same broker and topic.
//!
//! `cargo bench --bench kafka_consume -- BROKERS TOPIC THREADS`
//!
//! It also loads the data: `-- produce BROKERS TOPIC DIR` creates the topic with one partition
//! per `*.jsonl` file of DIR (the end-to-end benchmark's files) and produces each file's lines,
//! byte for byte, to its partition.

use std::time::{Duration, Instant};

use std::io::BufRead;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir::source::kafka::KafkaConfig;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.get(1).map(String::as_str) == Some("produce") {
        return produce(&args[2..]);
    }
    let (Some(brokers), Some(topic), Some(threads)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|t| t.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: cargo bench --bench kafka_consume -- BROKERS TOPIC THREADS");
        std::process::exit(2);
    };
    let config = KafkaConfig {
        brokers: brokers.clone(),
        topic: topic.clone(),
        group: "weir-bench-raw".into(),
        settings: weir::security::KafkaSettings::new(vec![(
            "broker.address.family".into(),
            "v4".into(),
        )]),
        until_end: true,
        until_offset: None,
        timeout: Duration::from_secs(10),
    };
    let probe: BaseConsumer = config.client_config().create().expect("consumer");
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let started = Instant::now();
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<i32> = partitions
                    .iter()
                    .copied()
                    .skip(t)
                    .step_by(threads)
                    .collect();
                let config = config.clone();
                s.spawn(move || consume(&config, &mine))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let (messages, bytes) = totals
        .iter()
        .fold((0, 0), |(m, b), (m2, b2)| (m + m2, b + b2));
    println!(
        "raw consume threads={threads} messages={messages} seconds={seconds:.3} records_per_s={:.0} mb_per_s={:.1}",
        messages as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}

/// Reads `partitions` from the beginning to their high watermarks; (messages, bytes).
fn consume(config: &KafkaConfig, partitions: &[i32]) -> (u64, u64) {
    let consumer: BaseConsumer = config.client_config().create().expect("consumer");
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    let mut ends = std::collections::HashMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&config.topic, *p, Duration::from_secs(10))
            .expect("watermarks");
        list.add_partition_offset(&config.topic, *p, Offset::Offset(low))
            .expect("partition");
        ends.insert(*p, high);
        if high > low {
            remaining += 1;
        }
    }
    consumer.assign(&list).expect("assign");
    let (mut messages, mut bytes) = (0u64, 0u64);
    while remaining > 0 {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("message");
        messages += 1;
        bytes += message.payload_len() as u64;
        if message.offset() + 1 == ends[&message.partition()] {
            remaining -= 1;
        }
    }
    (messages, bytes)
}

/// Loads the benchmark files into a new topic, one partition per file.
fn produce(args: &[String]) {
    let [brokers, topic, dir] = args else {
        eprintln!("usage: cargo bench --bench kafka_consume -- produce BROKERS TOPIC DIR");
        std::process::exit(2);
    };
    // Partition p gets the file Weir's file source reads as partition p.
    let files = weir::source::file::partition_files(std::path::Path::new(dir))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    let admin: AdminClient<_> = config.create().expect("admin client");
    let new = NewTopic::new(topic, files.len() as i32, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for result in runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new()))
        .expect("create topic")
    {
        result.expect("create topic");
    }
    // Large batches and lz4, as a bulk loader would; idempotence keeps each partition in file
    // order with several requests in flight.
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .clone()
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut sent = 0u64;
    for (partition, file) in files.iter().enumerate() {
        let reader = std::io::BufReader::new(std::fs::File::open(file).expect("open"));
        for line in reader.split(b'\n') {
            let line = line.expect("read");
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(partition as i32)
                .payload(&line[..]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        // Queue full: wait for deliveries.
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(600)).expect("flush");
    println!(
        "produced {sent} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
