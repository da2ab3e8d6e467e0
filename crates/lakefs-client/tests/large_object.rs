//! Streaming keeps memory flat: a 256 MiB object uploaded and downloaded through lakefs-local
//! (server in this process too) grows peak RSS by far less than its size. Its own test binary,
//! so the process's peak is this test's alone.

use std::io::Write;

use lakefs_client::UploadOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_round_trip_keeps_memory_flat() {
    const MIB: usize = 256;
    let local = test_support::LocalLakeFs::start().await;
    let client = local.client(1000).await;
    let ns = format!("local://{}", local.dir.path().join("ns").display());
    client
        .create_repository("big-objects", &ns, "main")
        .await
        .expect("repo");
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("create"));
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..MIB {
            f.write_all(&block).expect("write");
        }
    }
    let baseline = test_support::proc_status_kib("VmRSS");
    let stats = client
        .upload_file(
            "big-objects",
            "main",
            "big.bin",
            &src,
            &UploadOptions::default(),
        )
        .await
        .expect("upload");
    assert_eq!(stats.size_bytes, Some((MIB << 20) as u64));
    let dest = dir.path().join("back.bin");
    client
        .download_object("big-objects", "main", "big.bin", &dest)
        .await
        .expect("download (MD5 verified)");
    let growth_mib = test_support::proc_status_kib("VmHWM").saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 64,
        "peak RSS grew {growth_mib} MiB moving a {MIB} MiB object"
    );
    assert_eq!(
        std::fs::metadata(&dest).expect("stat").len(),
        (MIB << 20) as u64
    );
}
