use super::*;

fn up(weight: u32) -> Candidate {
    Candidate {
        weight,
        in_flight: 0,
        eligible: true,
    }
}

fn busy(weight: u32, in_flight: usize) -> Candidate {
    Candidate {
        weight,
        in_flight,
        eligible: true,
    }
}

fn down(weight: u32) -> Candidate {
    Candidate {
        weight,
        in_flight: 0,
        eligible: false,
    }
}

#[test]
fn smooth_round_robin_spreads_nginx_s_way() {
    let group = [up(5), up(1), up(1)];
    let mut rr = SmoothRoundRobin::default();
    let picks: Vec<usize> = (0..7).filter_map(|_| rr.pick(&group)).collect();
    assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn smooth_round_robin_honours_weights_over_many_picks() {
    let group = [up(1), up(2), up(7)];
    let mut rr = SmoothRoundRobin::default();
    let mut counts = [0usize; 3];
    for _ in 0..1000 {
        counts[rr.pick(&group).expect("eligible")] += 1;
    }
    assert_eq!(counts, [100, 200, 700]);
}

#[test]
fn smooth_round_robin_skips_ineligible_and_gives_none_when_all_are() {
    let mut rr = SmoothRoundRobin::default();
    let group = [up(1), down(1), up(1)];
    for _ in 0..10 {
        assert_ne!(rr.pick(&group), Some(1));
    }
    assert_eq!(rr.pick(&[down(1), down(3)]), None);
    assert_eq!(rr.pick(&[]), None);
}

#[test]
fn smooth_round_robin_starts_over_when_the_group_changes_size() {
    let mut rr = SmoothRoundRobin::default();
    rr.pick(&[up(1), up(1)]);
    let picks: Vec<usize> = (0..3)
        .filter_map(|_| rr.pick(&[up(1), up(1), up(1)]))
        .collect();
    assert_eq!(picks, [0, 1, 2]);
}

#[test]
fn least_conn_weighs_sessions_by_weight() {
    // 4 on weight 2 is 2 per unit, 3 on weight 1 is 3: the first wins.
    assert_eq!(least_conn(&[busy(2, 4), busy(1, 3)], 0), Some(0));
    assert_eq!(least_conn(&[busy(1, 4), busy(1, 3)], 0), Some(1));
    assert_eq!(least_conn(&[busy(1, 0), busy(2, 1)], 0), Some(0));
}

#[test]
fn least_conn_rotates_among_equals_and_skips_ineligible() {
    let group = [up(1), up(1), up(1)];
    assert_eq!(least_conn(&group, 0), Some(0));
    assert_eq!(least_conn(&group, 1), Some(1));
    assert_eq!(least_conn(&group, 5), Some(2));
    let group = [down(1), busy(1, 9), down(1)];
    assert_eq!(least_conn(&group, 0), Some(1));
    assert_eq!(least_conn(&[down(1)], 0), None);
    assert_eq!(least_conn(&[], 3), None);
}

fn key(n: u32) -> [u8; 4] {
    // 10.x.y.z client addresses.
    (0x0a00_0000 | n).to_be_bytes()
}

#[test]
fn client_hash_keeps_a_client_where_it_is_and_moves_only_the_leaving_one_s() {
    let ids = ["10.1.0.1:5061", "10.1.0.2:5061", "10.1.0.3:5061"];
    let all = [up(1), up(1), up(1)];
    let without_second = [up(1), down(1), up(1)];
    let mut moved = 0;
    for n in 0..3000 {
        let before = client_hash(&all, ids, &key(n)).expect("eligible");
        assert_eq!(client_hash(&all, ids, &key(n)), Some(before), "stable");
        let after = client_hash(&without_second, ids, &key(n)).expect("eligible");
        if before == 1 {
            assert_ne!(after, 1);
            moved += 1;
        } else {
            assert_eq!(after, before, "a client of a backend still up stays");
        }
    }
    // About a third belonged to the one that left.
    assert!((850..=1150).contains(&moved), "{moved} moved");
    assert_eq!(client_hash(&[down(1)], &ids[..1], &key(1)), None);
}

#[test]
fn client_hash_shares_clients_by_weight() {
    let ids = ["ws-a:8080", "ws-b:8080", "ws-c:8080"];
    let group = [up(1), up(2), up(1)];
    let mut counts = [0usize; 3];
    for n in 0..10_000 {
        counts[client_hash(&group, ids, &key(n)).expect("eligible")] += 1;
    }
    // Shares 1/4, 2/4, 1/4 within 10 %.
    for (count, expected) in counts.iter().zip([2500.0, 5000.0, 2500.0]) {
        let off = (*count as f64 - expected).abs() / expected;
        assert!(off < 0.10, "{counts:?}");
    }
}
