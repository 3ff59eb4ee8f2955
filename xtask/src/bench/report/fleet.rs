//! `--fleet`: a fleet report (`routeguard report --db … --db …`, HTML) of `--nodes` stores of
//! `--node-events` events each, every node's events naming it as their host and happening a
//! second after the node before's (so that every removal is part of a cluster incident: the
//! heaviest case for matching), alternated with one node's report of a store of `--events`
//! events: wall time, CPU time and peak memory side by side, with the load average.

use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{ensure, Result};

use super::{data, kib_to_mib, measure, mib, warm, Args, Series};

/// Target from issue 19: the fleet's HTML report from stores in under three seconds.
const TARGET_SECS: f64 = 3.0;

pub fn run(args: &Args, bin: &Path) -> Result<()> {
    let dir = super::super::bench_dir()?
        .join(format!("report-fleet-{}x{}", args.nodes, args.node_events));
    fs::create_dir_all(&dir)?;
    let stores: Vec<_> = (0..args.nodes)
        .map(|i| dir.join(format!("node-{i:03}.db")))
        .collect();
    let single = dir.join(format!("single-{}.db", args.events));
    if args.keep && single.exists() && stores.iter().all(|p| p.exists()) {
        println!(
            "bench report --fleet: reusing the stores in {}",
            dir.display()
        );
    } else {
        let t = Instant::now();
        for (i, db) in stores.iter().enumerate() {
            let node = data::Node {
                name: format!("node-{i:03}"),
                shift_s: i as i64,
            };
            data::write_node(db, args.node_events, &node)?;
        }
        let fleet_bytes: u64 = stores
            .iter()
            .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        let jsonl = dir.join("single.jsonl");
        data::write(&jsonl, &single, args.events)?;
        fs::remove_file(&jsonl).ok();
        println!(
            "bench report --fleet: {} stores of {} events ({:.0} MiB) and one of {} events ({:.0} MiB) written in {:.1} s",
            args.nodes,
            args.node_events,
            mib(fleet_bytes),
            args.events,
            mib(fs::metadata(&single).map_or(0, |m| m.len())),
            t.elapsed().as_secs_f64()
        );
    }
    let fleet_out = dir.join("fleet.html");
    let single_out = dir.join("single.html");
    let mut fleet_args = vec!["report".to_string(), "--format".into(), "html".into()];
    for p in &stores {
        fleet_args.push("--db".into());
        fleet_args.push(p.display().to_string());
    }
    fleet_args.extend(["--out".into(), fleet_out.display().to_string()]);
    let single_args = [
        "report".to_string(),
        "--format".into(),
        "html".into(),
        "--db".into(),
        single.display().to_string(),
        "--out".into(),
        single_out.display().to_string(),
    ];
    let (mut fleet, mut one) = (Series::default(), Series::default());
    for run in 1..=args.runs {
        for p in stores.iter().chain([&single]) {
            warm(p)?;
        }
        // Turn about, so that neither always goes first.
        let order: [(&str, &[String], &Path); 2] = if run % 2 == 1 {
            [
                ("fleet", &fleet_args, &fleet_out),
                ("one", &single_args, &single_out),
            ]
        } else {
            [
                ("one", &single_args, &single_out),
                ("fleet", &fleet_args, &fleet_out),
            ]
        };
        for (name, argv, out) in order {
            let load = super::super::procfs::load_average_1m();
            let m = measure(Command::new(bin).args(argv))?;
            ensure!(
                m.status.success(),
                "{} {name} report failed: {}",
                bin.display(),
                m.status
            );
            println!(
                "run {run} {name:<5}: {:.2} s ({:.2} s CPU), peak {:.0} MiB, {:.1} MiB of HTML (load average {load})",
                m.secs,
                m.cpu_secs,
                m.peak_kib as f64 / 1024.0,
                mib(fs::metadata(out).map_or(0, |m| m.len())),
            );
            let s = if name == "fleet" {
                &mut fleet
            } else {
                &mut one
            };
            s.times.push(m.secs);
            s.cpus.push(m.cpu_secs);
            s.peaks.push(m.peak_kib);
        }
    }
    let ((ft, fc, fp), (ot, oc, op)) = (fleet.summary(), one.summary());
    let clusters = fs::read_to_string(&fleet_out)?
        .matches("<div class=\"incident\" id=\"cluster-")
        .count();
    println!(
        "bench report --fleet: HTML report, median of {}: fleet of {} nodes × {} events {ft:.2} s ({fc:.2} s CPU) / {:.0} MiB ({clusters} cluster incidents shown) vs one node's {} events {ot:.2} s ({oc:.2} s CPU) / {:.0} MiB: fleet/one time ×{:.2}; target fleet < {TARGET_SECS} s: {}; load average {}",
        args.runs,
        args.nodes,
        args.node_events,
        kib_to_mib(fp),
        args.events,
        kib_to_mib(op),
        ft / ot,
        if ft < TARGET_SECS { "met" } else { "MISSED" },
        super::super::procfs::load_average_1m()
    );
    if !args.keep {
        fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
