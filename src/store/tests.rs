//! The suite every database must pass, run on SQLite and on PostgreSQL.

use super::*;
use BatchStatus::*;
use serde_json::json;

/// The shared suite every implementation must pass.
async fn suite(store: &Store) {
    let now = 1_700_000_000_000;
    let nb = |key: &str| NewBatch {
        key: key.into(),
        action: StockAction::Insert,
        list: StockList::Main,
        items: json!([{"sku": "A", "warehouse": "W", "quantity": 1}]),
        success_log: false,
        now,
    };
    let a = store.insert_batch(&nb("k-a")).await.unwrap();
    let b = store.insert_batch(&nb("k-b")).await.unwrap();
    assert!(b > a);
    // The same idempotency key twice is refused.
    assert!(store.insert_batch(&nb("k-a")).await.is_err());
    let got = store.batch(a).await.unwrap().unwrap();
    assert_eq!(got.status, Initialized);
    assert_eq!(got.request, None);
    assert_eq!(
        got.items,
        json!([{"sku": "A", "warehouse": "W", "quantity": 1}])
    );
    // Claims: one owner gets each batch once while the lease holds.
    let c1 = store.claim("one", now, 1000, 1).await.unwrap();
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].id, a);
    assert_eq!(c1[0].status, Commit, "claiming commits a batch to delivery");
    let c2 = store.claim("two", now, 1000, 10).await.unwrap();
    assert_eq!(c2.iter().map(|b| b.id).collect::<Vec<_>>(), vec![b]);
    assert!(
        store
            .claim("three", now + 500, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Saving needs the lease; a lost lease is reported, not overwritten.
    let mut x = c1[0].clone();
    x.status = Commit;
    x.request = Some(json!({"k": 1}));
    x.modified_at = now + 1;
    assert!(store.save("one", &x, false).await.unwrap());
    assert!(!store.save("two", &x, true).await.unwrap());
    // An expired lease is claimed again by another owner.
    let again = store.claim("three", now + 1001, 1000, 10).await.unwrap();
    assert_eq!(again.iter().map(|b| b.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(again[0].status, Commit);
    assert_eq!(again[0].request, Some(json!({"k": 1})));
    assert!(
        !store.save("one", &x, true).await.unwrap(),
        "the old holder lost it"
    );
    // Not due yet: not claimed.
    let mut later = again[0].clone();
    later.next_at = now + 60_000;
    later.attempts = 1;
    later.last_error = Some("down".into());
    assert!(store.save("three", &later, true).await.unwrap());
    let mut fin = again[1].clone();
    fin.status = Done;
    fin.results = Some(json!([{"sku": "A", "status": "SUCCESS"}]));
    fin.done_at = Some(now + 2000);
    assert!(store.save("three", &fin, true).await.unwrap());
    assert!(
        store
            .claim("four", now + 3000, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim("four#1", now + 60_000, 1000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.release_all("fou").await.unwrap(),
        0,
        "only its own tokens"
    );
    assert_eq!(store.release_all("four").await.unwrap(), 1);
    assert_eq!(
        store
            .claim("five", now + 60_000, 1000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // Listing and counting.
    let done = store.batches(Some(Done), 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].results,
        Some(json!([{"sku": "A", "status": "SUCCESS"}]))
    );
    assert_eq!(
        store.batches(None, 10).await.unwrap()[0].id,
        b,
        "newest first"
    );
    let counts = store.counts().await.unwrap();
    assert!(
        counts.contains(&(Done, 1)) && counts.contains(&(Commit, 1)),
        "{counts:?}"
    );
    // Reports.
    let r = Report {
        batch_id: Some(a),
        action_content_type: "stock_batch".into(),
        action_object_id: a.to_string(),
        raw_request: "{}".into(),
        raw_response: "{}".into(),
        error_code: "unknown_sku".into(),
        error_description: "unknown SKU 'A'".into(),
        is_ok: false,
        target_content_type: "product_stock".into(),
        target_object_id: "A".into(),
        modified_date: now,
        ..Report::default()
    };
    let rid = store.add_report(&r).await.unwrap();
    let reports = store.reports(Some(a), 10).await.unwrap();
    assert_eq!(
        reports,
        vec![Report {
            id: rid,
            ..r.clone()
        }]
    );
    assert!(store.reports(Some(b), 10).await.unwrap().is_empty());
    // Login sessions: open while used within the idle time, for their profiles, bounded.
    let profiles = vec!["flexi-users".to_string(), "other".to_string()];
    assert!(
        store
            .session_open("d1", "winstrom", &profiles, now, 1000, 2)
            .await
            .unwrap()
    );
    assert_eq!(
        store.session_use("d1", now + 900, 1000).await.unwrap(),
        Some(("winstrom".to_string(), profiles.clone()))
    );
    assert!(
        store
            .session_open("d2", "tester", &profiles[..1], now, 1000, 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .session_open("d3", "x", &profiles, now + 10, 1000, 2)
            .await
            .unwrap(),
        "full"
    );
    // d2 was not used: it expires at now + 1000; d1 was used at now + 900.
    assert_eq!(
        store.session_use("d2", now + 1000, 1000).await.unwrap(),
        None
    );
    assert!(
        store
            .session_open("d3", "x", &profiles, now + 1000, 1000, 2)
            .await
            .unwrap()
    );
    assert!(store.session_close("d1").await.unwrap());
    assert!(!store.session_close("d1").await.unwrap());
    assert_eq!(
        store.session_use("d1", now + 1001, 1000).await.unwrap(),
        None
    );
    // Signatures: refused while unexpired, accepted again after.
    assert!(store.first_use("s1", 1, now + 100, now).await.unwrap());
    assert!(!store.first_use("s1", 1, now + 100, now + 50).await.unwrap());
    assert!(store.first_use("s1", 2, now + 100, now + 50).await.unwrap());
    assert!(
        store
            .first_use("s1", 1, now + 300, now + 101)
            .await
            .unwrap()
    );
    // Many at once (recorded together): each signature is a first use exactly once, however
    // many times it comes.
    let asks = (0..200).map(|i| {
        let sign = format!("c{}", i % 50);
        async move {
            (
                sign.clone(),
                store.first_use(&sign, 7, now + 1000, now).await.unwrap(),
            )
        }
    });
    let answers = futures_join(asks).await;
    for k in 0..50 {
        let sign = format!("c{k}");
        let firsts = answers
            .iter()
            .filter(|(s, first)| *s == sign && *first)
            .count();
        assert_eq!(firsts, 1, "{sign}: {answers:?}");
    }
}

/// Runs futures concurrently on this task, keeping their order.
async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = fs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("done")).collect()
}

#[test]
fn urls_in_messages_carry_no_password() {
    assert_eq!(
        without_password("postgres://sb:p@ss#1@db/sb"),
        "postgres://***@db/sb"
    );
    assert_eq!(without_password("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
}

#[tokio::test]
async fn sqlite_passes_the_store_suite() {
    let dir = std::env::temp_dir().join(format!("soapbridge-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("suite.db");
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&format!("sqlite:{}", path.display()), "")
        .await
        .unwrap();
    suite(&store).await;
    drop(store);
    // Reopening migrates nothing twice and keeps the data.
    let store = Store::open(&format!("sqlite:{}", path.display()), "")
        .await
        .unwrap();
    assert_eq!(store.batches(None, 10).await.unwrap().len(), 2);
}

/// The same suite on PostgreSQL, in a throwaway schema: `SOAPBRIDGE_TEST_PG`, or the local
/// server (required: `.ci/run` starts it).
#[tokio::test]
async fn postgres_passes_the_store_suite() {
    let url = test_pg_url();
    let schema = format!("sb_suite_{}", std::process::id());
    let store = Store::open(&url, &schema).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required (start it, or set SOAPBRIDGE_TEST_PG): {e}")
    });
    suite(&store).await;
    store.drop_schema().await.unwrap();
}

fn test_pg_url() -> String {
    std::env::var("SOAPBRIDGE_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[test]
fn statuses_round_trip_by_name() {
    for s in BatchStatus::ALL {
        assert_eq!(BatchStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(BatchStatus::parse("finished"), None);
    assert!(Done.is_final() && Fail.is_final() && !Ongoing.is_final());
}
