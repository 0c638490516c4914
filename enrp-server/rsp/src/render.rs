//! Output of `rsp hsdump` and `rsp resolve`: an aligned text table (pool, PE ID, home
//! server, transports, policy, load) or JSON.

use crate::PeView;

/// Load as a percentage of the RFC 5356 §4.1 full-load value 0xFFFFFFFF.
pub fn load_percent(load: u32) -> f64 {
    f64::from(load) * 100.0 / f64::from(u32::MAX)
}

/// The PEs as an aligned table with a header line.
pub fn table(pes: &[PeView]) -> String {
    let head = [
        "POOL",
        "PE ID",
        "HOME",
        "USER TRANSPORT",
        "ASAP TRANSPORT",
        "POLICY",
        "LOAD",
    ];
    let mut rows: Vec<[String; 7]> = vec![head.map(str::to_string)];
    for p in pes {
        rows.push([
            p.pool.clone(),
            format!("0x{:08x}", p.pe_id),
            format!("0x{:08x}", p.home_server_id),
            p.user_transport.to_string(),
            p.asap_transport
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string),
            p.policy.clone(),
            p.load
                .map_or_else(|| "-".to_string(), |l| format!("{:.1}%", load_percent(l))),
        ]);
    }
    let mut width = [0usize; 7];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportView;

    #[test]
    fn table_has_one_aligned_row_per_pe() {
        let pe = PeView {
            pool: "EchoPool".into(),
            pe_id: 0x10,
            home_server_id: 0x7e57,
            user_transport: TransportView {
                protocol: "tcp",
                addresses: vec!["127.0.0.1".parse().unwrap()],
                port: Some(7000),
                transport_use: "data",
            },
            asap_transport: None,
            policy: "Least Used".into(),
            policy_code: 5,
            load: Some(u32::MAX / 2),
            registration_life_ms: 600_000,
        };
        let t = table(&[pe]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("EchoPool  0x00000010  0x00007e57  tcp:127.0.0.1:7000"));
        assert!(lines[1].ends_with("Least Used  50.0%"), "{}", lines[1]);
        assert_eq!(lines[0].find("PE ID"), lines[1].find("0x00000010"));
    }
}
