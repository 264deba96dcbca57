//! Deterministic sample data: realistic card transactions for the demo, the tests and
//! the benchmarks. Same seed, same bytes. The personal data is synthetic (valid-looking
//! CPFs with correct check digits, made-up names and e-mails).

use std::io::Write;

/// Which file to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// With the `is_fraud` label.
    Training,
    /// Without the label.
    Scoring,
}

/// splitmix64: tiny, fast and good enough for synthetic data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João", "Larissa",
    "Marcos", "Natália", "Otávio", "Paula", "Rafael", "Sofia", "Thiago", "Vitória", "Wagner",
];
const LAST: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
];
const MCC: &[&str] = &["5411", "5812", "5999", "4829", "7995", "5732", "6011", "5541", "4121", "5912"];
const CHANNELS: &[&str] = &["online", "pos", "atm", "branch"];
const FOREIGN: &[&str] = &["US", "PT", "AR", "NG", "RU", "CN", "GB"];

/// A CPF with valid check digits, formatted `123.456.789-09`.
pub fn cpf(rng: &mut Rng) -> String {
    let mut d: Vec<u32> = (0..9).map(|_| rng.below(10) as u32).collect();
    for len in [9usize, 10] {
        let sum: u32 = d.iter().take(len).enumerate().map(|(i, x)| x * (len as u32 + 1 - i as u32)).sum();
        let r = (sum * 10) % 11;
        d.push(if r == 10 { 0 } else { r });
    }
    let s: String = d.iter().map(|x| char::from(b'0' + *x as u8)).collect();
    format!("{}.{}.{}-{}", &s[0..3], &s[3..6], &s[6..9], &s[9..11])
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'ã' | 'â' => 'a',
            'é' | 'ê' => 'e',
            'í' => 'i',
            'ó' | 'ô' | 'õ' => 'o',
            'ú' => 'u',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Age bands of the training sample (a protected attribute, never a feature).
pub const AGE_BANDS: &[&str] = &["18-29", "30-44", "45-59", "60+"];

/// The CSV header of a sample file.
pub fn header(kind: SampleKind) -> &'static str {
    match kind {
        SampleKind::Training => {
            "transaction_id,customer_name,customer_cpf,customer_email,amount,merchant_category,country,channel,tx_time,age_band,is_fraud"
        }
        SampleKind::Scoring => {
            "transaction_id,customer_name,customer_cpf,customer_email,amount,merchant_category,country,channel,tx_time"
        }
    }
}

/// Writes `rows` transactions as CSV. Fraud is rarer than 1 in 10 and depends on the
/// amount, the hour, the channel and the country, so a model has something to learn.
pub fn write_csv(out: &mut impl Write, kind: SampleKind, rows: usize, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    writeln!(out, "{}", header(kind))?;
    // 2026-11-01T00:00:00Z
    let start = 1_793_491_200i64;
    for i in 0..rows {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let cpf = cpf(&mut rng);
        let email = format!("{}.{}{}@example.com.br", ascii_lower(first), ascii_lower(last), rng.below(100));
        let channel = rng.pick(CHANNELS);
        let foreign = rng.unit() < 0.08;
        let country = if foreign { rng.pick(FOREIGN) } else { "BR" };
        let secs = start + (rng.unit() * 27.0 * 86_400.0) as i64;
        let hour = (secs / 3600) % 24;
        let night = !(6..22).contains(&hour);
        // Log-normal-ish amount around R$ 120.
        let base = (rng.unit() + rng.unit() + rng.unit() - 1.5) * 1.6 + 4.8;
        let amount = base.exp();
        let logit = -5.0
            + 0.9 * (amount.ln() - 4.8)
            + if night { 1.4 } else { 0.0 }
            + if channel == "online" { 1.1 } else { 0.0 }
            + if foreign { 1.8 } else { 0.0 };
        let fraud = rng.unit() < 1.0 / (1.0 + (-logit).exp());
        let amount = if fraud { amount * (1.0 + rng.unit()) } else { amount };
        let (y, mo, d, h, mi, s) = civil(secs);
        write!(
            out,
            "tx-{seed}-{i:08},{first} {last},{cpf},{email},{amount:.2},{},{country},{channel},{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z",
            rng.pick(MCC)
        )?;
        match kind {
            // Independent of fraud: a model that treats age bands alike passes the fairness gate.
            SampleKind::Training => writeln!(out, ",{},{fraud}", rng.pick(AGE_BANDS))?,
            SampleKind::Scoring => writeln!(out)?,
        }
    }
    Ok(())
}

/// The sample as bytes.
pub fn csv_bytes(kind: SampleKind, rows: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(rows * 140);
    write_csv(&mut v, kind, rows, seed).expect("writing to a Vec cannot fail");
    v
}

fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let date = crate::utc_date(secs * 1000);
    let y = date[0..4].parse().unwrap_or(1970);
    let m = date[5..7].parse().unwrap_or(1);
    let d = date[8..10].parse().unwrap_or(1);
    let sod = secs.rem_euclid(86_400);
    (y, m, d, sod / 3600, (sod % 3600) / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let a = csv_bytes(SampleKind::Training, 200, 7);
        assert_eq!(a, csv_bytes(SampleKind::Training, 200, 7));
        assert_ne!(a, csv_bytes(SampleKind::Training, 200, 8));
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 201);
        assert!(lines.iter().all(|l| l.split(',').count() == 11));
        let frauds = lines.iter().filter(|l| l.ends_with(",true")).count();
        assert!((1..40).contains(&frauds), "fraud count {frauds}");
    }

    #[test]
    fn cpf_check_digits_are_valid() {
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let c: Vec<u32> = cpf(&mut rng).chars().filter_map(|c| c.to_digit(10)).collect();
            for len in [9usize, 10] {
                let sum: u32 = c.iter().take(len).enumerate().map(|(i, x)| x * (len as u32 + 1 - i as u32)).sum();
                assert_eq!(c[len], ((sum * 10) % 11) % 10);
            }
        }
    }
}
