//! The chart measures what the records say, the SVG parses as XML whatever the strings hold, and a real
//! renderer (librsvg's `rsvg-convert`) turns it into a PNG of the size it declares.

use std::time::Duration;

use super::svg::{self, AXIS_X};
use super::*;
use crate::boot_stage::BootStage;

const T0: u64 = 1_764_000_000_000;

fn at(seconds: f64, event: Event) -> Stamped {
    Stamped { ms: T0 + (seconds * 1000.0) as u64, event }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A whole `kthw up` as the seed runs it: three nodes, every phase after `nodes`, etcd failing once and run
/// again, and waits in several phases, two of them on different nodes at once.
fn full_run() -> Vec<Stamped> {
    let mut r = vec![at(2.0, Event::ImageReady { key: "abc123".into(), took: secs(2.0) })];
    for (i, node) in ["control-plane-1", "worker-node-1", "worker-node-2"].iter().enumerate() {
        r.push(at(2.0, Event::NodeBooting { node: node.to_string() }));
        r.push(at(30.0 + i as f64 * 4.0, Event::NodeUp { node: node.to_string(), took: secs(28.0 + i as f64 * 4.0) }));
    }
    let mut t = 40.0;
    let mut phase = |r: &mut Vec<Stamped>, phase: Phase, took: f64, failed: bool| {
        r.push(at(t, Event::PhaseBegins { phase }));
        t += took;
        r.push(at(
            t,
            if failed {
                Event::PhaseFailed { phase, took: secs(took) }
            } else {
                Event::PhaseEnds { phase, took: secs(took), changed: 3 }
            },
        ));
        t += 0.1;
    };
    for p in [Phase::Pki, Phase::Kubeconfigs] {
        phase(&mut r, p, 1.5, false);
    }
    phase(&mut r, Phase::Etcd, 20.0, true);
    let wait = |node: &str, what: &str, end: f64, took: f64, ok: bool| {
        at(end, Event::Waited { phase: Phase::Etcd, node: node.into(), what: what.into(), took: secs(took), ok })
    };
    r.push(wait("control-plane-1", "etcd to answer", 63.0, 19.0, false));
    for p in [Phase::Etcd, Phase::ControlPlane, Phase::Workers, Phase::Cilium, Phase::Coredns, Phase::Ready] {
        phase(&mut r, p, 12.0, false);
    }
    // Waits in the second etcd run (63.3 to 75.3 s) and in workers (87.5 to 99.5 s), two nodes at once.
    r.push(wait("control-plane-1", "etcd to answer", 70.0, 5.0, true));
    for node in ["worker-node-1", "worker-node-2"] {
        r.push(at(
            99.0,
            Event::Waited {
                phase: Phase::Workers,
                node: node.into(),
                what: "kubelet".into(),
                took: secs(9.0),
                ok: true,
            },
        ));
    }
    r.push(at(135.9, Event::Note("not drawn".into())));
    r
}

fn doc(text: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not XML: {e}\n{text}"))
}

fn attr(n: &roxmltree::Node, name: &str) -> f64 {
    n.attribute(name).unwrap().parse().unwrap()
}

#[test]
fn the_chart_has_a_row_per_node_and_per_phase_run_with_waits_beneath_their_phase() {
    let chart = chart("t", &full_run(), None);
    let names: Vec<String> =
        chart.rows.iter().map(|r| format!("{}{}", if r.nested { "  " } else { "" }, r.name)).collect();
    assert_eq!(
        names,
        [
            "image",
            "control-plane-1",
            "worker-node-1",
            "worker-node-2",
            "pki",
            "kubeconfigs",
            "etcd",
            "  etcd to answer (control-plane-1)",
            "etcd",
            "  etcd to answer (control-plane-1)",
            "control-plane",
            "workers",
            "  kubelet (worker-node-1)",
            "  kubelet (worker-node-2)",
            "cilium",
            "coredns",
            "ready",
        ]
    );
    let mut phase = None;
    for row in chart.rows.iter().filter(|r| r.group == Group::Phases) {
        match row.nested {
            false => phase = Some(&row.bars[0]),
            true => {
                let (p, w) = (phase.unwrap(), &row.bars[0]);
                assert!(p.from <= w.from && w.to <= p.to, "wait {w:?} lies inside its phase {p:?}");
            }
        }
    }
    let failed = &chart.rows[6].bars[0];
    assert_eq!((failed.kind, failed.end), (Kind::Phase, End::Failed));
    assert!((failed.seconds() - 20.0).abs() < 0.01, "{failed:?}");
    assert_eq!(chart.rows[7].bars[0].end, End::Failed, "the wait that gave up");
    let boot = &chart.rows[2].bars[0];
    assert_eq!((boot.kind, boot.from, boot.to), (Kind::Boot, 2.0, 34.0));
    assert_eq!(chart.start_ms, T0);
}

#[test]
fn every_bar_is_placed_and_sized_by_its_seconds_on_one_scale() {
    let records = full_run();
    let chart = chart("t", &records, None);
    let text = svg::render(&chart);
    let doc = doc(&text);
    let k = svg::scale(chart.span);
    let bars: Vec<roxmltree::Node> =
        doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("bar "))).collect();
    let expected: Vec<&Bar> = chart.rows.iter().flat_map(|r| &r.bars).collect();
    assert_eq!(bars.len(), expected.len());
    for (node, bar) in bars.iter().zip(expected) {
        assert_eq!(node.attribute("class").unwrap(), format!("bar {}", svg::kind_name(bar.kind)));
        assert!((attr(node, "x") - (AXIS_X + bar.from * k)).abs() < 0.01, "{bar:?}");
        // At least a pixel wide: a phase that took no time is still seen.
        assert!((attr(node, "width") - (bar.seconds() * k).max(1.0)).abs() < 0.01, "{bar:?}");
    }
    // The phases follow one another left to right, and each phase's waits lie inside it.
    let phases: Vec<(f64, f64)> = bars
        .iter()
        .filter(|n| n.attribute("class") == Some("bar phase"))
        .map(|n| (attr(n, "x"), attr(n, "x") + attr(n, "width")))
        .collect();
    assert_eq!(phases.len(), 9);
    assert!(phases.windows(2).all(|w| w[0].1 <= w[1].0 + 0.01), "{phases:?}");
    let etcd_again = phases[3];
    let wait = bars.iter().filter(|n| n.attribute("class") == Some("bar wait")).nth(1).unwrap();
    assert!(attr(wait, "x") >= etcd_again.0 && attr(wait, "x") + attr(wait, "width") <= etcd_again.1 + 0.01);
    // Durations are written beside the names, the failure among them.
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for said in ["20.0 s, FAILED", "boot 28.0 s", "12.0 s", "19.0 s, gave up", "2 min 16 s in all"] {
        assert!(texts.iter().any(|t| t.contains(said)), "{said:?} in {texts:?}");
    }
    let red = bars.iter().filter(|n| n.attribute("fill") == Some("#d62728")).count();
    assert_eq!(red, 2, "the failed phase and the wait that gave up are red");
}

#[test]
fn any_string_in_a_name_or_a_wait_gives_valid_xml_that_reads_back() {
    let nasty = "n<1>&\"'\u{0}\u{1b}\u{FFFF}]]>\t\nü";
    let records = [
        at(0.0, Event::NodeBooting { node: nasty.into() }),
        at(5.0, Event::PhaseBegins { phase: Phase::Etcd }),
        at(
            9.0,
            Event::Waited { phase: Phase::Etcd, node: nasty.into(), what: nasty.into(), took: secs(3.0), ok: true },
        ),
    ];
    let text = svg::render(&chart(nasty, &records, None));
    let doc = doc(&text);
    let all: String = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(all.contains("n<1>&\"'\u{FFFD}\u{FFFD}\u{FFFD}]]>\t\nü"), "{all}");
    // A node that never answered and a phase that never ended run to the end, drawn as unfinished.
    let c = chart("t", &records, None);
    let open: Vec<&Bar> = c.rows.iter().flat_map(|r| &r.bars).filter(|b| b.end == End::Open).collect();
    assert_eq!(open.len(), 2, "{c:?}");
    assert!(open.iter().all(|b| b.to == 9.0), "{open:?}");
    assert!(all.contains("9.0 s+, unfinished"), "{all}");
    // Drawn later (a bundle of a boot that failed at its deadline), they run to that moment.
    let later = chart("t", &records, Some(T0 + 21_000));
    assert!(later.rows.iter().flat_map(|r| &r.bars).filter(|b| b.end == End::Open).all(|b| b.to == 21.0));
}

/// "Still waiting" is drawn while its phase runs; once the phase ended, only the waits' own ends are.
#[test]
fn a_wait_seen_only_in_progress_stands_until_its_phase_ends() {
    let waiting = |s: f64| Event::Waiting {
        phase: Phase::Cilium,
        node: "the API".into(),
        what: "kube-system/cilium to roll out".into(),
        waited: secs(s),
        last: String::new(),
    };
    let mut records =
        vec![at(0.0, Event::PhaseBegins { phase: Phase::Cilium }), at(10.0, waiting(9.0)), at(20.0, waiting(19.0))];
    let live = chart("t", &records, None);
    assert_eq!(
        live.rows[1].bars,
        [Bar {
            from: 1.0,
            to: 20.0,
            kind: Kind::Wait,
            end: End::Open,
            title: "cilium: waiting on the API for kube-system/cilium to roll out".into()
        }]
    );
    records.push(at(
        25.0,
        Event::Waited {
            phase: Phase::Cilium,
            node: "the API".into(),
            what: "all to roll out".into(),
            took: secs(24.0),
            ok: true,
        },
    ));
    records.push(at(25.5, Event::PhaseEnds { phase: Phase::Cilium, took: secs(25.5), changed: 1 }));
    let done = chart("t", &records, None);
    let names: Vec<&str> = done.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["cilium", "all to roll out (the API)"]);
}

#[test]
fn nothing_recorded_draws_nothing_and_a_flood_of_rows_is_cut() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(write_svg(&RunDir::at(home.path())), None);
    let many: Vec<Stamped> = (0..400)
        .flat_map(|i| {
            let phase = Phase::Pki;
            [
                at(i as f64, Event::PhaseBegins { phase }),
                at(i as f64 + 0.5, Event::PhaseEnds { phase, took: secs(0.5), changed: 0 }),
            ]
        })
        .collect();
    let text = svg::render(&chart("t", &many, None));
    let doc = doc(&text);
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("bar phase")).count(), svg::MAX_ROWS);
    assert!(text.contains("100 more rows not drawn"));
}

/// librsvg (GNOME's SVG renderer, Debian's librsvg2-bin) reads the picture and draws it at its declared size.
#[test]
fn rsvg_convert_renders_the_picture_as_a_png() {
    let Some(()) =
        crate::testing::needs(crate::testing::on_path("rsvg-convert", "rsvg_convert_renders_the_picture_as_a_png"))
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let dir = RunDir::at(home.path());
    for r in full_run() {
        crate::events::record(&dir, &r);
    }
    let svg = write_svg(&dir).expect("a picture");
    let (width, height) = crate::testing::render_png(&svg, &home.path().join("timeline.png"));
    let doc_text = std::fs::read_to_string(&svg).unwrap();
    let root = doc(&doc_text);
    assert_eq!(width as f64, attr(&root.root_element(), "width"));
    assert_eq!(height as f64, attr(&root.root_element(), "height"));
    assert!(height > 400, "17 rows and a legend: {height}");
}

/// The run of the 2026-12-07 evidence (shared/evidence/boot-hang-2026-12-07/timeline.jsonl: the image, a
/// 20 s acceleration probe, three boots) as kthw now records it: the probe's time, worker-node-1's first
/// boot stalling in the initrd and its second answering, and worker-node-2 failing another way.
fn retried_run() -> Vec<Stamped> {
    let booting = |s: f64, node: &str| at(s, Event::NodeBooting { node: node.into() });
    vec![
        at(51.5, Event::ImageReady { key: "bookworm-2e208ecbf45d6618".into(), took: secs(51.5) }),
        at(
            71.6,
            Event::Accel {
                accel: "TCG".into(),
                reason: "/dev/kvm opens, but a KVM guest did not boot the node kernel in 20 s".into(),
                probe: Some(secs(20.1)),
            },
        ),
        booting(73.5, "control-plane-1"),
        booting(73.5, "worker-node-1"),
        booting(73.5, "worker-node-2"),
        at(92.8, Event::NodeUp { node: "control-plane-1".into(), took: secs(19.3) }),
        at(
            101.5,
            Event::NodeStalled {
                node: "worker-node-1".into(),
                stage: BootStage::Initrd,
                quiet: secs(24.1),
                took: secs(28.0),
                attempt: 1,
                attempts: 3,
                last: "virtio_blk virtio1: [vda] 16777216 512-byte logical blocks".into(),
            },
        ),
        booting(102.0, "worker-node-1"),
        at(
            110.0,
            Event::NodeFailed { node: "worker-node-2".into(), took: secs(36.5), why: "its domain stopped".into() },
        ),
        at(122.0, Event::NodeUp { node: "worker-node-1".into(), took: secs(48.5) }),
    ]
}

#[test]
fn the_probe_has_a_row_and_a_stalled_or_failed_boot_is_red_with_why() {
    let chart = chart("t", &retried_run(), None);
    let names: Vec<&str> = chart.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["image", "acceleration probe", "control-plane-1", "worker-node-1", "worker-node-2"]);
    let probe = &chart.rows[1].bars[0];
    assert_eq!((probe.kind, probe.end), (Kind::Probe, End::Ok));
    assert!((probe.from - 51.5).abs() < 0.01 && (probe.to - 71.6).abs() < 0.01, "right after the image: {probe:?}");
    assert!(probe.title.contains("TCG") && probe.title.contains("did not boot"), "{}", probe.title);

    let w1 = &chart.rows[3].bars;
    assert_eq!(w1.len(), 2, "the stalled boot, then the one that answered: {w1:?}");
    assert_eq!((w1[0].kind, w1[0].end, w1[0].from, w1[0].to), (Kind::Boot, End::Failed, 73.5, 101.5));
    for why in ["boot 1 of 3 stalled in the initrd", "nothing new on its console for 24.1 s", "[vda]", "started again"]
    {
        assert!(w1[0].title.contains(why), "{why:?} in {}", w1[0].title);
    }
    assert_eq!((w1[1].end, w1[1].from, w1[1].to), (End::Ok, 102.0, 122.0), "the second boot's own bar");
    let w2 = &chart.rows[4].bars[0];
    assert_eq!((w2.end, w2.from, w2.to), (End::Failed, 73.5, 110.0));
    assert_eq!(w2.title, "worker-node-2: boot failed: its domain stopped");

    let text = svg::render(&chart);
    let doc = doc(&text);
    let bars: Vec<roxmltree::Node> =
        doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("bar "))).collect();
    let red: Vec<String> = bars
        .iter()
        .filter(|n| n.attribute("fill") == Some("#d62728"))
        .map(|n| n.descendants().filter_map(|t| t.text()).collect())
        .collect();
    assert_eq!(red.len(), 2, "{red:?}");
    assert!(red[0].contains("stalled in the initrd") && red[1].contains("its domain stopped"), "{red:?}");
    assert_eq!(bars.iter().filter(|n| n.attribute("class") == Some("bar probe")).count(), 1);
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for said in ["acceleration probe", "20.1 s", "28.0 s, FAILED, boot 20.0 s"] {
        assert!(texts.iter().any(|t| t.contains(said)), "{said:?} in {texts:?}");
    }
}

#[test]
fn a_remembered_verdict_draws_no_probe_row() {
    let records = [
        at(1.0, Event::Accel { accel: "TCG".into(), reason: "remembered".into(), probe: None }),
        at(2.0, Event::NodeBooting { node: "n".into() }),
    ];
    let names: Vec<String> = chart("t", &records, None).rows.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["n"]);
}
