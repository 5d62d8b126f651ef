//! One conformance suite, run against both transports: the in-process bus and NATS (a real
//! `nats-server` started on a free loopback port). Each case uses its own scratch subjects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{Bus, BusError, InProcessBus, TypedBus};
use bulkhead_runtime::metrics;
use bulkhead_runtime::testing::NatsServer;
use bulkhead_schema::messages::common::RequestRejected;
use bulkhead_schema::messages::health::{ServiceHeartbeat, ServiceState};
use bulkhead_schema::{Envelope, Subject, WireMessage};
use bytes::Bytes;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(5);

fn mk_heartbeat(instance: &str) -> ServiceHeartbeat {
    ServiceHeartbeat {
        service: "conformance".into(),
        instance: instance.into(),
        state: ServiceState::Ready,
        detail: None,
        build_version: "test".into(),
        started_at_ms: 0,
    }
}

/// Each case gets subjects under `bulkhead.scratch.<transport>.<case>`.
struct Case {
    bus: Arc<dyn Bus>,
    prefix: Vec<String>,
}

impl Case {
    fn subject(&self, tail: &[&str]) -> Subject {
        let mut tokens: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        tokens.extend_from_slice(tail);
        Subject::scratch(&tokens)
    }
}

async fn next_payload(sub: &mut bulkhead_runtime::bus::Subscription) -> Bytes {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
        .payload
}

/// Lets a subscription reach the server before anyone publishes (NATS subscribes asynchronously).
async fn settle(bus: &Arc<dyn Bus>) {
    bus.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn pub_sub_delivers_in_order_to_every_subscriber(case: Case) {
    let subject = case.subject(&["fanout"]);
    let mut a = case.bus.subscribe(&subject).await.unwrap();
    let mut b = case.bus.subscribe(&subject).await.unwrap();
    settle(&case.bus).await;
    for i in 0..100u32 {
        case.bus
            .publish(&subject, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    for sub in [&mut a, &mut b] {
        for i in 0..100u32 {
            assert_eq!(
                next_payload(sub).await,
                Bytes::from(i.to_be_bytes().to_vec())
            );
        }
    }
}

async fn wildcards_match_like_nats(case: Case) {
    let mut one_token = case
        .bus
        .subscribe(&case.subject(&["wild", "*"]))
        .await
        .unwrap();
    let mut tail = case
        .bus
        .subscribe(&case.subject(&["wild", ">"]))
        .await
        .unwrap();
    settle(&case.bus).await;
    case.bus
        .publish(
            &case.subject(&["wild", "a", "deep"]),
            Bytes::from_static(b"deep"),
        )
        .await
        .unwrap();
    case.bus
        .publish(
            &case.subject(&["wild", "a"]),
            Bytes::from_static(b"shallow"),
        )
        .await
        .unwrap();
    case.bus
        .publish(&case.subject(&["other"]), Bytes::from_static(b"unrelated"))
        .await
        .unwrap();
    assert_eq!(
        next_payload(&mut one_token).await,
        Bytes::from_static(b"shallow")
    );
    assert_eq!(next_payload(&mut tail).await, Bytes::from_static(b"deep"));
    assert_eq!(
        next_payload(&mut tail).await,
        Bytes::from_static(b"shallow")
    );
    case.bus.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), one_token.next())
            .await
            .is_err(),
        "`*` matched two tokens"
    );
}

async fn queue_group_delivers_each_message_once(case: Case) {
    let subject = case.subject(&["queue"]);
    let members: Vec<_> =
        futures::future::join_all((0..3).map(|_| case.bus.queue_subscribe(&subject, "workers")))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let mut plain = case.bus.subscribe(&subject).await.unwrap();
    settle(&case.bus).await;
    const N: u32 = 300;
    for i in 0..N {
        case.bus
            .publish(&subject, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    for _ in 0..N {
        next_payload(&mut plain).await; // a plain subscriber still sees everything
    }
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut per_member = Vec::new();
    for mut member in members {
        let mut count = 0;
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), member.next()).await
        {
            *seen
                .entry(u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
                .or_default() += 1;
            count += 1;
        }
        per_member.push(count);
    }
    assert_eq!(seen.len(), N as usize, "every message reached the group");
    assert!(
        seen.values().all(|&n| n == 1),
        "no message reached two members"
    );
    assert!(
        per_member.iter().filter(|&&n| n > 0).count() >= 2,
        "work spread over members: {per_member:?}"
    );
}

async fn request_reply_and_its_failures(case: Case) {
    let subject = case.subject(&["echo"]);
    let mut server = case.bus.subscribe(&subject).await.unwrap();
    settle(&case.bus).await;
    let bus = case.bus.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = server.next().await {
            let mut answer = b"re:".to_vec();
            answer.extend_from_slice(&m.payload);
            bus.publish(
                &m.reply.expect("a request has a reply subject"),
                answer.into(),
            )
            .await
            .unwrap();
        }
    });
    let reply = case
        .bus
        .request(&subject, Bytes::from_static(b"ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"re:ping"));

    let nobody = case
        .bus
        .request(&case.subject(&["nobody"]), Bytes::new(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(nobody, BusError::NoResponders(_)), "{nobody:?}");

    let silent_subject = case.subject(&["silent"]);
    let _silent = case.bus.subscribe(&silent_subject).await.unwrap();
    settle(&case.bus).await;
    let timeout = Duration::from_millis(200);
    let err = case
        .bus
        .request(&silent_subject, Bytes::new(), timeout)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
    responder.abort();
}

async fn dropping_a_subscription_unsubscribes(case: Case) {
    let subject = case.subject(&["dropped"]);
    let sub = case.bus.subscribe(&subject).await.unwrap();
    settle(&case.bus).await;
    drop(sub);
    settle(&case.bus).await;
    let err = case
        .bus
        .request(&subject, Bytes::new(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoResponders(_)), "{err:?}");
}

async fn oversized_publish_is_refused(case: Case) {
    let too_big = Bytes::from(vec![0u8; case.bus.max_payload() + 1]);
    let err = case
        .bus
        .publish(&case.subject(&["big"]), too_big)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::TooLarge { .. }), "{err:?}");
}

/// Bad input on a subject: the typed subscriber rejects it with a counted error and keeps
/// delivering the good messages around it.
async fn typed_subscriber_survives_bad_input(case: Case) {
    const LIMIT: usize = 4096;
    let typed = TypedBus::with_decode_limit(case.bus.clone(), LIMIT);
    let subject = case.subject(&["typed"]);
    let mut sub = typed.subscribe::<ServiceHeartbeat>(&subject).await.unwrap();
    settle(&case.bus).await;
    let counted = |reason| metrics::bus_rejected_count(ServiceHeartbeat::TYPE, reason);
    let before = [
        "malformed_envelope",
        "too_large",
        "wrong_type",
        "malformed_payload",
    ]
    .map(counted);

    typed
        .publish(&subject, &mk_heartbeat("first"))
        .await
        .unwrap();
    case.bus
        .publish(&subject, Bytes::from_static(b"\xc1 definitely not msgpack"))
        .await
        .unwrap();
    case.bus
        .publish(&subject, Bytes::from(vec![0x90u8; LIMIT + 1]))
        .await
        .unwrap();
    let mut other = Envelope::wrap(&mk_heartbeat("x")).unwrap();
    other.message_type = "something.Else".into();
    case.bus
        .publish(&subject, other.to_bytes().into())
        .await
        .unwrap();
    let mut garbled = Envelope::wrap(&mk_heartbeat("x")).unwrap();
    garbled.payload = b"\x01\x02".to_vec();
    case.bus
        .publish(&subject, garbled.to_bytes().into())
        .await
        .unwrap();
    typed
        .publish(&subject, &mk_heartbeat("second"))
        .await
        .unwrap();

    for expected in ["first", "second"] {
        let got = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.message.instance, expected);
    }
    let after = [
        "malformed_envelope",
        "too_large",
        "wrong_type",
        "malformed_payload",
    ]
    .map(counted);
    for (i, reason) in [
        "malformed_envelope",
        "too_large",
        "wrong_type",
        "malformed_payload",
    ]
    .iter()
    .enumerate()
    {
        assert!(after[i] > before[i], "{reason} was not counted");
    }
}

async fn answered_requests_and_refused_bad_ones(case: Case) {
    let typed = TypedBus::new(case.bus.clone());
    let subject = case.subject(&["typed-echo"]);
    let requests = case.bus.subscribe(&subject).await.unwrap();
    settle(&case.bus).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = typed.clone();
    let serving = stop.clone();
    tokio::spawn(async move {
        server
            .answer_requests(
                requests,
                4,
                &serving,
                |request: ServiceHeartbeat| async move {
                    ServiceHeartbeat {
                        state: ServiceState::Degraded,
                        ..request
                    }
                },
            )
            .await;
    });
    let reply = typed
        .request::<_, ServiceHeartbeat>(&subject, &mk_heartbeat("asker"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.message.instance, "asker");
    assert_eq!(reply.message.state, ServiceState::Degraded);

    let garbage = case
        .bus
        .request(&subject, Bytes::from_static(b"\xc1garbage"), WAIT)
        .await
        .unwrap();
    let refusal = Envelope::decode::<RequestRejected>(&garbage.payload, usize::MAX)
        .unwrap()
        .message;
    assert_eq!(refusal.kind, "malformed_envelope");
    let typed_refusal = typed
        .request::<_, ServiceHeartbeat>(
            &subject,
            &RequestRejected {
                kind: "k".into(),
                reason: "not a heartbeat".into(),
            },
            WAIT,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&typed_refusal, BusError::RequestRejected { kind, .. } if kind == "wrong_type"),
        "{typed_refusal:?}"
    );
    let still = typed
        .request::<_, ServiceHeartbeat>(&subject, &mk_heartbeat("again"), WAIT)
        .await;
    assert_eq!(
        still.unwrap().message.instance,
        "again",
        "the server kept serving"
    );
    stop.cancel();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod in_process {
            use super::*;
            $(#[tokio::test]
            async fn $case() {
                let bus: Arc<dyn Bus> = Arc::new(InProcessBus::default());
                super::$case(Case { bus, prefix: vec!["inprocess".into(), stringify!($case).into()] }).await;
            })*
        }
        mod nats {
            use super::*;
            $(#[tokio::test]
            async fn $case() {
                let server = NatsServer::start();
                let bus: Arc<dyn Bus> = Arc::new(server.connect().await);
                super::$case(Case { bus, prefix: vec!["nats".into(), stringify!($case).into()] }).await;
            })*
        }
    };
}

conformance!(
    pub_sub_delivers_in_order_to_every_subscriber,
    wildcards_match_like_nats,
    queue_group_delivers_each_message_once,
    request_reply_and_its_failures,
    dropping_a_subscription_unsubscribes,
    oversized_publish_is_refused,
    typed_subscriber_survives_bad_input,
    answered_requests_and_refused_bad_ones,
);

/// `connect` returns at once and connects in the background; until the server has told its
/// limit, the bus must not refuse every message as too large.
#[tokio::test]
async fn nats_bus_accepts_messages_before_the_server_is_reached() {
    let port = bulkhead_runtime::testing::free_port();
    let options = bulkhead_runtime::bus::NatsOptions {
        url: format!("nats://127.0.0.1:{port}"),
        ..Default::default()
    };
    let bus = bulkhead_runtime::bus::NatsBus::connect(&options)
        .await
        .unwrap();
    assert_eq!(
        bus.max_payload(),
        bulkhead_schema::DEFAULT_MAX_MESSAGE_BYTES
    );
    bus.publish(&Subject::scratch(&["early"]), Bytes::from_static(b"queued"))
        .await
        .expect("a small message is accepted while connecting");
}
