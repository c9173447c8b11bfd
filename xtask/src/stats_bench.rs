//! `cargo xtask bench-stats`: loads N events (default 10 million, 30 days) into a fresh collector through the
//! ingest API, then times every stats query over the 30-day range through HTTP. Prints numbers; asserts nothing.

use crate::demo_data::{self, Plan};
use crate::{cargo, run_step, target_dir};
use anyhow::{bail, Context as _};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

const TOKEN: &str = "bench-admin-token-0123456789";

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut events: u64 = 10_000_000;
    let mut dir = target_dir().join("bench-stats");
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--events" => events = it.next().context("--events needs a number")?.replace('_', "").parse()?,
            "--data-dir" => dir = it.next().context("--data-dir needs a directory")?.into(),
            other => bail!("unknown flag {other:?} (try --events N, --data-dir DIR)"),
        }
    }
    run_step("build the collector (release)", cargo().args(["build", "--release", "-p", "footprint-collector"]))?;
    let reuse = dir.join("footprint.db").exists();
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("bench.toml");
    std::fs::write(&config, format!("admin_token = \"{TOKEN}\"\nqueue_capacity_mb = 256\n[[sites]]\nid = \"demo\"\nwrite_key = \"wk_demo\"\norigins = [\"*\"]\nconsent_mode = \"implied\"\n"))?;
    let mut child = Command::new(target_dir().join("release/footprint"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the collector")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let target = loop {
        let line = lines.next().context("the collector exited before listening")??;
        if let Some(addr) = line.split("listening on http://").nth(1) {
            break addr.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let result = (|| -> anyhow::Result<()> {
        if reuse {
            eprintln!("==> reusing the events already in {}", dir.display());
        } else {
            eprintln!("==> loading {events} events over 30 days into {} (through POST /v1/batch)", dir.display());
            let sent = demo_data::send(&Plan { target: target.clone(), events, connections: 16, ..Plan::default() })?;
            println!("loaded {} events in {:.0} s ({:.0} events/s, ingest with stats maintenance)", sent.events, sent.seconds, sent.events as f64 / sent.seconds);
        }
        time_queries(&target)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn time_queries(target: &str) -> anyhow::Result<()> {
    let r = "site=demo";
    let queries: Vec<(&str, String)> = vec![
        ("overview", format!("/admin/v1/stats/overview?{r}")),
        ("timeseries by day", format!("/admin/v1/stats/timeseries?{r}&interval=day")),
        ("timeseries by hour", format!("/admin/v1/stats/timeseries?{r}&interval=hour")),
        ("timeseries by week, Europe/Berlin", format!("/admin/v1/stats/timeseries?{r}&interval=week&tz=Europe/Berlin")),
        ("breakdown page", format!("/admin/v1/stats/breakdown?{r}&by=page")),
        ("breakdown entry_page", format!("/admin/v1/stats/breakdown?{r}&by=entry_page")),
        ("breakdown exit_page", format!("/admin/v1/stats/breakdown?{r}&by=exit_page")),
        ("breakdown referrer", format!("/admin/v1/stats/breakdown?{r}&by=referrer")),
        ("breakdown utm_source", format!("/admin/v1/stats/breakdown?{r}&by=utm_source")),
        ("breakdown utm_campaign", format!("/admin/v1/stats/breakdown?{r}&by=utm_campaign")),
        ("breakdown device", format!("/admin/v1/stats/breakdown?{r}&by=device")),
        ("breakdown browser", format!("/admin/v1/stats/breakdown?{r}&by=browser")),
        ("breakdown os", format!("/admin/v1/stats/breakdown?{r}&by=os")),
        ("heatmap", format!("/admin/v1/stats/heatmap?{r}")),
        ("events + goals", format!("/admin/v1/stats/events?{r}&goal=Signed+Up&goal=Purchase")),
        ("funnel (4 steps)", format!("/admin/v1/stats/funnel?{r}&step=page:/&step=page:/pricing&step=page:/signup&step=event:Signed%20Up")),
        ("live", format!("/admin/v1/stats/live?{r}")),
        ("filtered overview device=mobile", format!("/admin/v1/stats/overview?{r}&device=mobile")),
        ("filtered timeseries page=/pricing", format!("/admin/v1/stats/timeseries?{r}&page=%2Fpricing")),
        ("filtered breakdown page, referrer=google", format!("/admin/v1/stats/breakdown?{r}&by=page&referrer=www.google.com")),
        ("filtered breakdown referrer, event=Signed Up", format!("/admin/v1/stats/breakdown?{r}&by=referrer&event=Signed+Up")),
        ("quarantine", format!("/admin/v1/quarantine?{r}")),
        ("consent ledger", format!("/admin/v1/consent-ledger?{r}")),
    ];
    let (status, body) = demo_data::get(target, &format!("/admin/v1/stats/overview?{r}"), TOKEN)?;
    println!("30-day totals ({status}): {body}");
    println!("{:<46} {:>9} {:>9} {:>9}", "query (30 days, HTTP round trip)", "min ms", "median", "max");
    let mut worst: f64 = 0.0;
    for (name, path) in &queries {
        let mut times = Vec::new();
        for _ in 0..6 {
            let started = Instant::now();
            let (status, body) = demo_data::get(target, path, TOKEN)?;
            if status != 200 {
                bail!("{name}: {status} {body}");
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.remove(0); // warm-up
        times.sort_by(f64::total_cmp);
        worst = worst.max(times[times.len() / 2]);
        println!("{name:<46} {:>9.1} {:>9.1} {:>9.1}", times[0], times[times.len() / 2], times[times.len() - 1]);
    }
    println!("slowest median: {worst:.1} ms (target: every query < 500 ms)");
    Ok(())
}
