//! `--fleet`: a fleet report (`routeguard report --db … --db …`, HTML) of `--nodes` stores of
//! `--node-events` events each, every node's events naming it as their host and happening a
//! second after the node before's (so that every removal is part of a cluster incident: the
//! heaviest case for matching), alternated with one node's report of a store of `--events`
//! events: wall time, CPU time and peak memory side by side, with the load average. With
//! `--baseline`, the baseline binary writes both reports too, turn about with this one, and the
//! bench prints the ratios and whether both wrote the same reports.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{ensure, Result};

use super::{data, kib_to_mib, measure, mib, same_report, warm, yes_no, Args, Series};

/// Target from issue 19: the fleet's HTML report from stores in under three seconds.
const TARGET_SECS: f64 = 3.0;

pub fn run(args: &Args, bin: &Path, baseline: Option<&Path>) -> Result<()> {
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
    // The binaries benched: this one, then the baseline, each writing reports of its own.
    let mut bins = vec![("this", bin.to_owned(), "")];
    if let Some(base) = baseline {
        println!("bench report --fleet: this binary {}", bin.display());
        println!("bench report --fleet: baseline    {}", base.display());
        bins.push(("baseline", base.to_owned(), "-baseline"));
    }
    let fleet_in: Vec<&Path> = stores.iter().map(PathBuf::as_path).collect();
    let inputs = [("fleet", fleet_in), ("one", vec![single.as_path()])];
    // series[input][binary]
    let mut series: Vec<Vec<Series>> = inputs
        .iter()
        .map(|_| bins.iter().map(|_| Series::default()).collect())
        .collect();
    let mut same = [true, true];
    for run in 1..=args.runs {
        for p in stores.iter().chain([&single]) {
            warm(p)?;
        }
        // Turn about, so that neither input nor binary always goes first.
        let mut order: Vec<(usize, usize)> = (0..inputs.len())
            .flat_map(|n| (0..bins.len()).map(move |b| (n, b)))
            .collect();
        if run % 2 == 0 {
            order.reverse();
        }
        for (n, b) in order {
            let (name, dbs) = &inputs[n];
            let (label, bin, tag) = &bins[b];
            let out = dir.join(format!("{name}{tag}.html"));
            let mut cmd = Command::new(bin);
            cmd.args(["report", "--format", "html"]);
            for db in dbs {
                cmd.arg("--db").arg(db);
            }
            cmd.arg("--out").arg(&out);
            let load = super::super::procfs::load_average_1m();
            let m = measure(&mut cmd)?;
            ensure!(
                m.status.success(),
                "{} {name} report failed: {}",
                bin.display(),
                m.status
            );
            let who = if bins.len() > 1 {
                format!(" {label:<8}")
            } else {
                String::new()
            };
            let target = if *name == "fleet" {
                format!(
                    ", {:+.2} s from the {TARGET_SECS} s target",
                    m.secs - TARGET_SECS
                )
            } else {
                String::new()
            };
            println!(
                "run {run} {name:<5}{who}: {:.2} s ({:.2} s CPU){target}, peak {:.0} MiB, {:.1} MiB of HTML (load average {load})",
                m.secs,
                m.cpu_secs,
                m.peak_kib as f64 / 1024.0,
                mib(fs::metadata(&out).map_or(0, |m| m.len())),
            );
            let s = &mut series[n][b];
            s.times.push(m.secs);
            s.cpus.push(m.cpu_secs);
            s.peaks.push(m.peak_kib);
        }
        if bins.len() > 1 {
            for (n, (name, _)) in inputs.iter().enumerate() {
                same[n] &= same_report(
                    &dir.join(format!("{name}.html")),
                    &dir.join(format!("{name}-baseline.html")),
                )?;
            }
        }
    }
    let summary: Vec<Vec<(f64, f64, u64)>> = series
        .iter_mut()
        .map(|per_bin| per_bin.iter_mut().map(Series::summary).collect())
        .collect();
    let ((ft, fc, fp), (ot, oc, op)) = (summary[0][0], summary[1][0]);
    let clusters = fs::read_to_string(dir.join("fleet.html"))?
        .matches("<div class=\"incident\" id=\"cluster-")
        .count();
    let met = if ft < TARGET_SECS { "met" } else { "MISSED" };
    println!(
        "bench report --fleet: HTML report, median of {}: fleet of {} nodes × {} events {ft:.2} s ({fc:.2} s CPU) / {:.0} MiB ({clusters} cluster incidents shown) vs one node's {} events {ot:.2} s ({oc:.2} s CPU) / {:.0} MiB: fleet/one time ×{:.2}; target fleet < {TARGET_SECS} s: {met} ({:+.2} s); load average {}",
        args.runs,
        args.nodes,
        args.node_events,
        kib_to_mib(fp),
        args.events,
        kib_to_mib(op),
        ft / ot,
        ft - TARGET_SECS,
        super::super::procfs::load_average_1m()
    );
    if bins.len() > 1 {
        let ((bft, bfc, bfp), (bot, boc, bop)) = (summary[0][1], summary[1][1]);
        println!(
            "bench report --fleet: baseline, median of {}: fleet {bft:.2} s ({bfc:.2} s CPU) / {:.0} MiB, one node {bot:.2} s ({boc:.2} s CPU) / {:.0} MiB; this binary / baseline: fleet time ×{:.2}, CPU ×{:.2}; one node time ×{:.2}, CPU ×{:.2}; same report from both: fleet {}, one node {}",
            args.runs,
            kib_to_mib(bfp),
            kib_to_mib(bop),
            ft / bft,
            fc / bfc,
            ot / bot,
            oc / boc,
            yes_no(same[0]),
            yes_no(same[1]),
        );
    }
    if !args.keep {
        fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
