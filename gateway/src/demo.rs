//! The demo tenant: Kopi Nusantara, a coffee shop in Jakarta, with its knowledge base compiled
//! into the binary so `sapa serve` answers questions on a fresh machine.

/// Slug of the demo tenant.
pub const TENANT: &str = "demo";
/// Display name of the demo tenant.
pub const NAME: &str = "Kopi Nusantara (demo)";
/// The demo tenant's owner, created at its first start.
pub const OWNER_EMAIL: &str = "owner@demo.local";

/// The demo knowledge base: file name and contents.
pub const KNOWLEDGE_BASE: &[(&str, &str)] = &[
    (
        "biji-kopi-retail.md",
        include_str!("../../demo/kb/biji-kopi-retail.md"),
    ),
    (
        "catering-dan-acara.md",
        include_str!("../../demo/kb/catering-dan-acara.md"),
    ),
    (
        "faq-english.md",
        include_str!("../../demo/kb/faq-english.md"),
    ),
    ("faq.csv", include_str!("../../demo/kb/faq.csv")),
    (
        "komplain-dan-kebijakan.md",
        include_str!("../../demo/kb/komplain-dan-kebijakan.md"),
    ),
    (
        "member-dan-promo.md",
        include_str!("../../demo/kb/member-dan-promo.md"),
    ),
    (
        "menu-dan-harga.md",
        include_str!("../../demo/kb/menu-dan-harga.md"),
    ),
    ("pembayaran.md", include_str!("../../demo/kb/pembayaran.md")),
    (
        "pemesanan-dan-pengiriman.md",
        include_str!("../../demo/kb/pemesanan-dan-pengiriman.md"),
    ),
    (
        "profil-dan-lokasi.md",
        include_str!("../../demo/kb/profil-dan-lokasi.md"),
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    #[test]
    fn every_demo_file_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/kb");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let compiled: Vec<String> = super::KNOWLEDGE_BASE
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        assert_eq!(on_disk, compiled);
    }
}
