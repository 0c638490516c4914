//! The CSP codec (asap/wire/INTEROP.md §8) against the reports rsplib 3.4.4's components sent
//! to `cspmonitor` in `pcap-fixtures/rsplib/scenario-a.pcap` (UDP 2960): every report
//! decodes, the fields match the scenario (registrar 0xaaa1, PEs 0x11111111-0x33333333,
//! two PUs, one-second interval), and re-encoding gives the same bytes.

use rserpool_wire::csp::{ComponentGroup, CspReport, CSP_PORT};

/// UDP payloads to `port` in a classic little-endian Ethernet/IPv4 pcap.
fn udp_payloads(pcap: &[u8], port: u16) -> Vec<Vec<u8>> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "classic LE pcap");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..off + 16 + incl];
        off += 16 + incl;
        if pkt.len() < 34 || pkt[12..14] != [8, 0] || pkt[23] != 17 {
            continue;
        }
        let ihl = usize::from(pkt[14] & 15) * 4;
        let udp = &pkt[14 + ihl..];
        if u16::from_be_bytes([udp[2], udp[3]]) == port {
            out.push(udp[8..].to_vec());
        }
    }
    out
}

#[test]
fn rsplib_reports_decode_and_reencode_byte_exact() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../pcap-fixtures/rsplib/scenario-a.pcap"
    );
    let pcap = std::fs::read(path).expect("fixture");
    let reports = udp_payloads(&pcap, CSP_PORT);
    assert_eq!(reports.len(), 148, "CSP datagrams in scenario A");
    let mut senders = std::collections::BTreeMap::new();
    for bytes in &reports {
        let r = CspReport::decode(bytes).expect("rsplib report decodes");
        assert_eq!(
            r.report_interval_us, 1_000_000,
            "CSP_INTERVAL=1000 ms is sent in µs"
        );
        assert_eq!(
            r.encode(),
            *bytes,
            "byte-exact re-encoding of {:?}",
            r.sender
        );
        senders.entry(r.sender).or_insert_with(Vec::new).push(r);
    }
    let groups: Vec<_> = senders.keys().map(|s| (s.group(), s.object())).collect();
    assert!(groups.contains(&(ComponentGroup::Registrar, 0xaaa1)));
    for pe in [0x1111_1111u64, 0x2222_2222, 0x3333_3333] {
        assert!(
            groups.contains(&(ComponentGroup::PoolElement, pe)),
            "PE {pe:#x}"
        );
    }
    assert_eq!(
        groups
            .iter()
            .filter(|g| g.0 == ComponentGroup::PoolUser)
            .count(),
        2
    );
    // The registrar's first report: text fields and an idle handlespace.
    let pr = &senders[&rserpool_wire::csp::ComponentId(0x0100_0000_0000_aaa1)];
    assert_eq!(pr[0].location, "rsplab: 10.0.0.1:3863");
    assert_eq!(pr[0].status, "0[0] PEs in 0 Pools, 0 Peers");
    assert_eq!(pr[0].workload, 0xFFFF);
    assert!(pr[0].associations.is_empty());
    assert!(
        pr.last().unwrap().is_final(),
        "registrar's last report is final"
    );
    // A PU's report with its associations to the registrar (ASAP, PPID 11) and a PE.
    let with_assocs = senders
        .values()
        .flatten()
        .find(|r| r.sender.group() == ComponentGroup::PoolUser && r.associations.len() == 2)
        .expect("a PU report with two associations");
    assert_eq!(with_assocs.status, "1 Session");
    let a = &with_assocs.associations;
    assert_eq!(
        (a[0].receiver.group(), a[0].protocol, a[0].ppid),
        (ComponentGroup::Registrar, 132, 11)
    );
    assert_eq!(
        (a[1].receiver.group(), a[1].protocol, a[1].ppid),
        (ComponentGroup::PoolElement, 132, 0)
    );
}

mod props {
    use proptest::prelude::*;
    use rserpool_wire::csp::{ComponentId, CspAssociation, CspReport, CSP_REPORT_SIZE};

    proptest! {
        /// Any datagram decodes or is refused; never a panic (the monitor faces the network).
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = CspReport::decode(&b);
        }

        /// A valid header with arbitrary body bytes: decoding and re-encoding agree on
        /// every field.
        #[test]
        fn reports_roundtrip(
            flags in any::<u8>(),
            sender in any::<u64>(),
            ts in any::<u64>(),
            interval in any::<u32>(),
            location in "[ -~]{0,127}",
            status in "[ -~]{0,127}",
            workload in any::<u16>(),
            assocs in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u16>(), any::<u16>(), any::<u32>()), 0..5),
        ) {
            let r = CspReport {
                flags,
                sender: ComponentId(sender),
                timestamp_us: ts,
                report_interval_us: interval,
                location,
                status,
                workload,
                associations: assocs
                    .into_iter()
                    .map(|(id, d, f, p, ppid)| CspAssociation {
                        receiver: ComponentId(id),
                        duration_us: d,
                        flags: f,
                        protocol: p,
                        ppid,
                    })
                    .collect(),
            };
            let b = r.encode();
            prop_assert_eq!(b.len(), CSP_REPORT_SIZE + 24 * r.associations.len());
            prop_assert_eq!(CspReport::decode(&b).unwrap(), r);
        }
    }
}
