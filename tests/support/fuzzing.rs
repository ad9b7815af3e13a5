//! What the fuzz suites share: the generator (xorshift64*, small and seedable from
//! `WORKZ_FUZZ_SEED`, good enough to pick mutations) and a directory's listing, to see that
//! nothing outside the roots changed.

use std::path::{Path, PathBuf};

/// Every file under `dir`, links not followed.
pub fn snapshot(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(snapshot(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `WORKZ_FUZZ_SEED`, else from the clock; also the number of cases
    /// (`WORKZ_FUZZ_CASES`, else `default_cases`).
    pub fn from_env(default_cases: usize) -> (Rng, u64, usize) {
        let seed: u64 = std::env::var("WORKZ_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        let cases = std::env::var("WORKZ_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default_cases);
        (Rng(seed.max(1)), seed, cases)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `bytes` with one to eight bytes flipped, cuts or random tails.
    pub fn damage(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + self.below(8) {
            match self.below(3) {
                0 if !bytes.is_empty() => {
                    let at = self.below(bytes.len());
                    bytes[at] = self.next() as u8;
                }
                1 => bytes.truncate(self.below(bytes.len() + 1)),
                _ => bytes.extend((0..self.below(600)).map(|_| self.next() as u8)),
            }
        }
        bytes
    }

    /// A tar archive with one field of one header set to a hostile value and the header's
    /// checksum made right again, so that the reader gets past it to the entry.
    pub fn retar(&mut self, mut tar: Vec<u8>) -> Vec<u8> {
        let headers: Vec<usize> = (0..tar.len().saturating_sub(511))
            .step_by(512)
            .filter(|&at| &tar[at + 257..at + 262] == b"ustar")
            .collect();
        if headers.is_empty() {
            return tar;
        }
        let at = *self.pick(&headers);
        let strings = |items: &[&str]| items.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let (start, len, values) = match self.below(5) {
            0 => (
                0,
                100,
                strings(&["../escape.txt", "/tmp/workz-fuzz-escape", "a/../../b", "", "x\0y", "./a", "index.html"]),
            ),
            1 => (124, 12, {
                let mut sizes = strings(&["77777777777\0", "00000000000\0", "zzzzzzzzzzz\0", "-1\0"]);
                sizes.push([&[0x80u8][..], &[0xff; 11]].concat());
                sizes
            }),
            2 => (156, 1, strings(&["0", "1", "2", "3", "4", "5", "6", "7", "L", "K", "x", "g", "S", "\0"])),
            3 => (157, 100, strings(&["../../etc/passwd", "/etc/shadow", "index.html", ".", "", "css"])),
            _ => (100, 8, strings(&["0007777\0", "zzzzzzz\0", "0000000\0"])),
        };
        let value = self.pick(&values);
        let field = &mut tar[at + start..at + start + len];
        field.fill(0);
        field[..value.len().min(len)].copy_from_slice(&value[..value.len().min(len)]);
        tar[at + 148..at + 156].fill(b' ');
        let sum: u32 = tar[at..at + 512].iter().map(|&b| u32::from(b)).sum();
        tar[at + 148..at + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar
    }
}
