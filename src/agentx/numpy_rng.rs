//! `numpy.random.default_rng(seed)`: `SeedSequence` seeding a PCG64 (XSL-RR)
//! generator, and its `random()` / `uniform()`. AIPerf 0.12.0 draws each lane's
//! t* with it, so the same seed gives the same replay start as AIPerf.

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const POOL_SIZE: usize = 4;
const PCG_MULT: u128 = (0x2360_ed05_1fc6_5da4_u128 << 64) | 0x4385_df64_9fcc_f645;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> 16)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> 16)
}

/// `SeedSequence(seed).pool`.
fn pool(seed: u64) -> [u32; POOL_SIZE] {
    // An integer seed as little-endian 32-bit words (0 is one zero word).
    let entropy: Vec<u32> = if seed >> 32 == 0 {
        vec![seed as u32]
    } else {
        vec![seed as u32, (seed >> 32) as u32]
    };
    let mut hc = INIT_A;
    let mut m = [0u32; POOL_SIZE];
    for (i, slot) in m.iter_mut().enumerate() {
        *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hc);
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                let h = hashmix(m[src], &mut hc);
                m[dst] = mix(m[dst], h);
            }
        }
    }
    m
}

/// `SeedSequence.generate_state(4, uint64)`.
fn state_words(seed: u64) -> [u64; 4] {
    let p = pool(seed);
    let mut hc = INIT_B;
    let mut w = [0u32; 8];
    for (i, slot) in w.iter_mut().enumerate() {
        let mut v = p[i % POOL_SIZE] ^ hc;
        hc = hc.wrapping_mul(MULT_B);
        v = v.wrapping_mul(hc);
        *slot = v ^ (v >> 16);
    }
    std::array::from_fn(|i| u64::from(w[2 * i]) | (u64::from(w[2 * i + 1]) << 32))
}

/// numpy's default generator.
pub struct Generator {
    state: u128,
    inc: u128,
}

impl Generator {
    /// `numpy.random.default_rng(seed)`.
    pub fn new(seed: u64) -> Self {
        let v = state_words(seed);
        let init_state = (u128::from(v[0]) << 64) | u128::from(v[1]);
        let init_seq = (u128::from(v[2]) << 64) | u128::from(v[3]);
        let mut g = Generator {
            state: 0,
            inc: (init_seq << 1) | 1,
        };
        g.step();
        g.state = g.state.wrapping_add(init_state);
        g.step();
        g
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        ((s >> 64) as u64 ^ s as u64).rotate_right((s >> 122) as u32)
    }

    /// `Generator.random()`: 53 random bits in [0, 1).
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.uniform(low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.random()
    }
}

#[cfg(test)]
mod tests {
    use super::Generator;

    /// Values printed by numpy 2.4.6 (`default_rng(s).random()`, `.uniform`).
    #[test]
    fn matches_numpy() {
        for (seed, first, second) in [
            (15091031484302225277, 0.5890962268319017, 0.9123790046251625),
            (880459334995895841, 0.12530234101987237, 0.8926522373015234),
            (16274485790733279940, 0.177673070740465, 0.9996446550466689),
        ] {
            let mut g = Generator::new(seed);
            assert_eq!((g.random(), g.random()), (first, second), "seed {seed}");
        }
        for (seed, first, uniform) in [
            (0, 0.6369616873214543, 13421.07138361202),
            (1, 0.5118216247002567, 10980.777592467357),
            (12345, 0.22733602246716966, 5433.166106121042),
            (1099511627779, 0.7736560850714245, 16086.680486935313),
        ] {
            assert_eq!(Generator::new(seed).random(), first, "seed {seed}");
            assert_eq!(
                Generator::new(seed).uniform(1000.0, 20500.5),
                uniform,
                "seed {seed}"
            );
        }
    }
}
