//! Micro-benchmarks of the hot paths: frame decoding, the heartbeat round trip through the
//! cluster, the timer wheel, the allocator, the AUTH check and rendering the players' server
//! list. `cargo bench --bench core`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use login_node::cluster::alloc::Allocator;
use login_node::cluster::{Cluster, ConnId, NoHandler, Now, Outbox};
use login_node::proto::{self, auth, Auth, GameInfo, Heartbeat, Message};
use login_node::timer::TimerWheel;
use login_node::Config;

struct Discard(usize);

impl Outbox for Discard {
    fn send(&mut self, _conn: ConnId, frame: &[u8]) {
        self.0 += frame.len();
    }
    fn close(&mut self, _conn: ConnId) {}
}

fn frames(c: &mut Criterion) {
    let mut buf = Vec::new();
    for ts in 0..1_000u64 {
        Heartbeat { ts }.encode(&mut buf);
    }
    let mut g = c.benchmark_group("frame_decode");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("1000_heartbeats_coalesced", |b| {
        b.iter(|| {
            let mut at = 0;
            let mut sum = 0u64;
            while let Ok(Some((payload, used))) = proto::parse_frame(&buf[at..], 65535) {
                sum = sum.wrapping_add(Heartbeat::decode(&payload[2..]).map_or(0, |h| h.ts));
                at += used;
            }
            black_box(sum)
        })
    });
    g.finish();
    let mut info = Vec::new();
    GameInfo {
        serv_id: 1,
        serv_name: "S1 龙城",
        open_time: 1,
        cross_plat: "p1",
        cross_server_id: 0,
        cross_pos: 0,
        addr: "10.0.0.5:8001",
    }
    .encode(&mut info)
    .expect("fits");
    c.bench_function("message_decode/game_info", |b| {
        b.iter(|| black_box(Message::decode(black_box(&info[2..])).is_ok()))
    });
    c.bench_function("message_encode/heartbeat_ack", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            Heartbeat { ts: black_box(7) }.encode_ack(&mut out);
            black_box(out.len())
        })
    });
}

fn heartbeat_round_trip(c: &mut Criterion) {
    let config = Config {
        token: "t".into(),
        ..Config::default()
    };
    let now = Now {
        mono_ms: 0,
        unix_secs: 1_700_000_000,
    };
    let mut cluster = Cluster::new(&config, now);
    let mut out = Discard(0);
    cluster.open(0, "127.0.0.1:1".parse().expect("addr"), now);
    let mut f = Vec::new();
    let sign = auth::sign(1, 1_700_000_000, b"t");
    Auth {
        node_type: 1,
        node_id: 1,
        plat: "p",
        time: 1_700_000_000,
        sign,
    }
    .encode(&mut f)
    .expect("fits");
    cluster.handle_frame(0, &f[2..], now, &mut out, &mut NoHandler);
    let mut hb = Vec::new();
    Heartbeat { ts: 9 }.encode(&mut hb);
    c.bench_function("cluster/heartbeat", |b| {
        b.iter(|| cluster.handle_frame(0, black_box(&hb[2..]), now, &mut out, &mut NoHandler))
    });
}

fn timers(c: &mut Criterion) {
    for n in [1_000u64, 100_000] {
        c.bench_function(&format!("timer/schedule_cancel_{n}"), |b| {
            let mut w = TimerWheel::new(10, 0);
            for i in 0..n {
                w.insert(1_000 + i * 7 % 60_000, i);
            }
            b.iter(|| {
                let id = w.insert(black_box(30_000), 0);
                w.cancel(id)
            })
        });
        c.bench_function(&format!("timer/advance_fire_all_{n}"), |b| {
            b.iter_batched(
                || {
                    let mut w = TimerWheel::new(10, 0);
                    for i in 0..n {
                        w.insert(1 + i * 7 % 60_000, i);
                    }
                    w
                },
                |mut w| {
                    let mut fired = 0;
                    while w.poll(60_000).is_some() {
                        fired += 1;
                    }
                    fired
                },
                BatchSize::LargeInput,
            )
        });
    }
}

fn allocator(c: &mut Criterion) {
    c.bench_function("alloc/assign_100k_games_over_1k_crosses", |b| {
        b.iter_batched(
            || {
                let mut a = Allocator::new(100);
                let p = a.platforms.intern("p").expect("room");
                for x in 0..1_000 {
                    a.cross_online(x, p, "cross", 100, []);
                }
                (a, p)
            },
            |(mut a, p)| {
                for g in 0..100_000 {
                    a.game_online(g, "", p, (0, 0));
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
}

fn auth_check(c: &mut Criterion) {
    let sign = auth::sign(1001, 1_700_000_000, b"secret");
    c.bench_function("auth/verify", |b| {
        b.iter(|| auth::verify(black_box(1001), 1_700_000_000, &sign, &[b"secret"]))
    });
}

fn public_list(c: &mut Criterion) {
    use login_node::admin::public::render;
    use login_node::admin::servers::ServerEntry;
    use login_node::cluster::GameStatus;
    let names: Vec<String> = (0..1_000).map(|i| format!("S{i}")).collect();
    let addrs: Vec<String> = (0..1_000)
        .map(|i| format!("10.0.{}.{}:8000", i / 256, i % 256))
        .collect();
    let entries: Vec<ServerEntry<'_>> = (0..1_000)
        .map(|i| ServerEntry {
            id: i,
            name: &names[i as usize],
            addr: Some(&addrs[i as usize]),
            open_time: Some(1_700_000_000 + i),
            status: GameStatus::Normal,
        })
        .collect();
    let mut group = c.benchmark_group("public");
    group.throughput(Throughput::Elements(1_000));
    // One render serves every request until the list changes (at most once a second).
    group.bench_function("render_1000_servers", |b| {
        b.iter(|| render("p", black_box(&entries), 1_800_000_000, 7 * 86_400))
    });
    group.finish();
}

criterion_group!(
    benches,
    frames,
    heartbeat_round_trip,
    timers,
    allocator,
    auth_check,
    public_list
);
criterion_main!(benches);
