//! std collections, run hard on several threads through rayon, with PoolMalloc as the global
//! allocator; results are checked, then the allocator's invariants and accounting.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

use poolmalloc::PoolMalloc;
use rayon::prelude::*;

#[global_allocator]
static A: PoolMalloc = PoolMalloc;

#[test]
fn collections_on_many_threads() {
    let totals: Vec<(usize, u64, usize)> = (0..16u64)
        .into_par_iter()
        .map(|t| {
            let mut map: HashMap<String, Vec<u64>> = HashMap::new();
            let mut tree: BTreeMap<u64, String> = BTreeMap::new();
            let mut strings: Vec<String> = Vec::new();
            for i in 0..20_000u64 {
                let key = format!("k{}", (i * 2654435761 + t) % 5000);
                map.entry(key.clone()).or_default().push(i);
                tree.insert(i ^ t, key);
                strings.push("x".repeat((i % 300) as usize));
                if i % 7 == 0 {
                    tree.remove(&((i / 2) ^ t));
                    strings.swap_remove((i as usize * 31) % strings.len());
                }
            }
            let pushed: usize = map.values().map(Vec::len).sum();
            let sum: u64 = tree.keys().take(1000).sum();
            (pushed, sum, strings.iter().map(String::len).sum())
        })
        .collect();
    for (pushed, _, chars) in &totals {
        assert_eq!(*pushed, 20_000);
        assert!(*chars > 0);
    }

    // Arc and channels: blocks allocated on one thread, dropped on another.
    let shared = Arc::new(Mutex::new(Vec::<Box<[u8; 48]>>::new()));
    let (tx, rx) = mpsc::channel::<Arc<String>>();
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let (tx, shared) = (tx.clone(), shared.clone());
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    tx.send(Arc::new(format!("{t}-{i}"))).unwrap();
                    if i % 10 == 0 {
                        shared.lock().unwrap().push(Box::new([t as u8; 48]));
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let received: Vec<Arc<String>> = rx.iter().collect();
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(received.len(), 40_000);
    assert!(received.iter().all(|s| s.contains('-')));
    let boxes = std::mem::take(&mut *shared.lock().unwrap());
    assert_eq!(boxes.len(), 4_000);
    assert!(boxes.iter().all(|b| b.iter().all(|&x| x == b[0])));
    drop((received, boxes));

    poolmalloc::collect();
    poolmalloc::check_invariants().unwrap_or_else(|v| panic!("{v}"));
    let s = poolmalloc::stats();
    assert!(s.identity_holds(), "{s}");
    assert!(s.arenas.mapped_ever >= 1, "PoolMalloc served the test");
    assert!(
        s.large.allocs_total > 0,
        "large requests took the large path"
    );
}
