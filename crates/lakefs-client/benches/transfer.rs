//! Transfer benchmark against lakefs-local on loopback: kvasir-seg (1996 files, ~33 MB)
//! uploaded and downloaded with concurrency 1 and with the default, and one 500 MB file
//! uploaded by the client and by `curl`. Prints files/s, MB/s, ratios and peak RSS:
//!
//! ```text
//! cargo bench -p lakefs-client --bench transfer
//! ```
//! SEG_DATASETS_DIR overrides ../shared/datasets; SEG_BENCH_BIG_MB the big file's size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lakefs_client::{
    DEFAULT_CONCURRENCY, DownloadOptions, LakeFsClient, LakeFsClientBuilder, UploadDirOptions,
    UploadOptions,
};
use lakefs_local::{DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, ServerConfig};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn dir_size(dir: &Path) -> (usize, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut files, mut bytes) = (0, 0);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (files, bytes)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let datasets = std::env::var_os("SEG_DATASETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"));
    let kvasir = datasets.join("kvasir-seg");
    assert!(
        kvasir.is_dir(),
        "kvasir-seg not found under {}: set SEG_DATASETS_DIR",
        datasets.display()
    );
    let work = tempfile::tempdir().expect("tmp");
    let server = lakefs_local::spawn(ServerConfig::new(work.path().join("server")), "127.0.0.1:0")
        .await
        .expect("server");
    let client = LakeFsClientBuilder::new(server.endpoint())
        .credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
        .build()
        .await
        .expect("client");
    let ns = format!("local://{}", work.path().join("ns").display());
    client
        .create_repository("bench", &ns, "main")
        .await
        .expect("repo");
    let (files, bytes) = dir_size(&kvasir);
    let mb = bytes as f64 / 1e6;
    println!(
        "lakefs-local transfer benchmark: kvasir-seg {files} files, {mb:.1} MB; default concurrency {DEFAULT_CONCURRENCY}"
    );

    folder_transfers(&client, &kvasir, work.path(), files, mb).await;
    big_file_transfers(&client, &server, work.path()).await;
    println!(
        "peak RSS of this process (client and server): {:.0} MiB",
        peak_rss_mib()
    );
    server.stop().await;
}

/// kvasir-seg uploaded and downloaded sequentially and at the default concurrency.
async fn folder_transfers(
    client: &LakeFsClient,
    kvasir: &Path,
    work: &Path,
    files: usize,
    mb: f64,
) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (i, concurrency) in [1, DEFAULT_CONCURRENCY].into_iter().enumerate() {
        let branch = format!("up{i}");
        client
            .create_branch("bench", &branch, "main")
            .await
            .expect("branch");
        let t = Instant::now();
        let report = client
            .upload_dir(
                kvasir,
                "bench",
                &branch,
                "data",
                &UploadDirOptions {
                    concurrency,
                    ..UploadDirOptions::default()
                },
            )
            .await
            .expect("upload");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.uploaded, files);
        client
            .commit("bench", &branch, "data", &Default::default(), false)
            .await
            .expect("commit");
        up.push(secs);
        println!(
            "upload   concurrency {concurrency:>2}: {secs:>6.2} s  {:>7.1} files/s  {:>6.1} MB/s",
            files as f64 / secs,
            mb / secs
        );
        let t = Instant::now();
        let dl = client
            .download_prefix(
                "bench",
                &branch,
                "data/",
                &DownloadOptions::new(work.join(format!("cache{i}"))).concurrency(concurrency),
            )
            .await
            .expect("download");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(dl.transferred, files);
        down.push(secs);
        println!(
            "download concurrency {concurrency:>2}: {secs:>6.2} s  {:>7.1} files/s  {:>6.1} MB/s",
            files as f64 / secs,
            mb / secs
        );
    }
    println!(
        "ratio default/sequential: upload {:.2}x, download {:.2}x (target >= 5x upload)",
        up[0] / up[1],
        down[0] / down[1]
    );
}

/// `file` uploaded by curl as `curl<round>.bin` on main.
fn curl_upload(server: &lakefs_local::RunningServer, file: &Path, round: usize) {
    let url = format!(
        "{}/api/v1/repositories/bench/branches/main/objects?path=curl{round}.bin",
        server.endpoint()
    );
    let status = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-f",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
        ])
        .arg(file)
        .args([
            "-u",
            &format!("{DEFAULT_ACCESS_KEY_ID}:{DEFAULT_SECRET_ACCESS_KEY}"),
            &url,
        ])
        .status()
        .expect("curl");
    assert!(status.success(), "curl upload failed");
}

/// One large file uploaded by the client and by curl (median of 3), then downloaded.
async fn big_file_transfers(
    client: &LakeFsClient,
    server: &lakefs_local::RunningServer,
    work: &Path,
) {
    let big_mb: usize = std::env::var("SEG_BENCH_BIG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let big = work.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).expect("create"));
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..big_mb {
            f.write_all(&block).expect("write");
        }
    }
    let size = (big_mb << 20) as f64 / 1e6;
    let mut client_times = Vec::new();
    let mut curl_times = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        client
            .upload_file(
                "bench",
                "main",
                &format!("big{round}.bin"),
                &big,
                &UploadOptions::default(),
            )
            .await
            .expect("upload big");
        client_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        curl_upload(server, &big, round);
        curl_times.push(t.elapsed().as_secs_f64());
    }
    client_times.sort_by(f64::total_cmp);
    curl_times.sort_by(f64::total_cmp);
    let (c, k) = (size / client_times[1], size / curl_times[1]);
    println!(
        "single {big_mb} MiB file upload (median of 3): client {c:.1} MB/s, curl {k:.1} MB/s, ratio {:.2} (target >= 0.5)",
        c / k
    );
    let t = Instant::now();
    client
        .download_object("bench", "main", "big1.bin", &work.join("big-back.bin"))
        .await
        .expect("download big");
    println!(
        "single {big_mb} MiB file download (MD5 verified): {:.1} MB/s",
        size / t.elapsed().as_secs_f64()
    );
}
