//! The small dense linear algebra the geometry metrics need, in f64: the Gram matrix of a
//! row set, eigenvalues of a symmetric matrix (cyclic Jacobi), and a square linear
//! assignment (shortest augmenting paths with potentials, the O(n³) Hungarian method).

/// `EᵀE` (d × d) of `n` rows of length `d`, row-major.
pub fn gram(rows: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut g = vec![0.0; d * d];
    for r in rows.chunks(d).take(n) {
        for i in 0..d {
            let ri = r[i];
            if ri == 0.0 {
                continue;
            }
            let gi = &mut g[i * d..(i + 1) * d];
            for (gj, &rj) in gi[i..].iter_mut().zip(&r[i..]) {
                *gj += ri * rj;
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            g[i * d + j] = g[j * d + i];
        }
    }
    g
}

/// Eigenvalues of the symmetric `n × n` matrix `a` (row-major, overwritten), descending.
/// Cyclic Jacobi rotations until the off-diagonal mass is below 1e-24 of the total.
pub fn sym_eigenvalues(a: &mut [f64], n: usize) -> Vec<f64> {
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-24 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J: columns p, q, then rows p, q.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
            }
        }
    }
    let mut ev: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    ev.sort_by(|x, y| y.total_cmp(x));
    ev
}

/// A minimum-cost perfect matching of the `n × n` cost matrix (row-major): `assign[i]` is
/// the column of row i. Hungarian method with potentials (Kuhn–Munkres in the
/// shortest-augmenting-path form), O(n³).
pub fn assignment(cost: &[f64], n: usize) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    // 1-based internally: column 0 is the virtual start of each augmenting path.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut row_of = vec![NONE; n + 1]; // row matched to column j (row index 1..n)
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let (mut delta, mut j1) = (f64::INFINITY, NONE);
            let row = &cost[(i0 - 1) * n..i0 * n];
            for j in 1..=n {
                if !used[j] {
                    let cur = row[j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == NONE {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assign = vec![0usize; n];
    for j in 1..=n {
        assign[row_of[j] - 1] = j - 1;
    }
    assign
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::rng::Rng;

    #[test]
    fn jacobi_eigenvalues_of_known_matrices() {
        let mut a = vec![2.0, 1.0, 1.0, 2.0];
        let ev = sym_eigenvalues(&mut a, 2);
        assert!((ev[0] - 3.0).abs() < 1e-12 && (ev[1] - 1.0).abs() < 1e-12);
        // Q diag(λ) Qᵀ for a random orthogonal Q (Gram–Schmidt) gives λ back.
        let n = 7;
        let mut rng = Rng::new(5);
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < n {
            let mut x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            for b in &q {
                let d: f64 = x.iter().zip(b).map(|(p, r)| p * r).sum();
                x.iter_mut().zip(b).for_each(|(p, r)| *p -= d * r);
            }
            let norm = x.iter().map(|p| p * p).sum::<f64>().sqrt();
            q.push(x.iter().map(|p| p / norm).collect());
        }
        let lam = [9.0, 5.0, 4.0, 2.5, 1.0, 0.5, 0.0];
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n).map(|k| q[k][i] * lam[k] * q[k][j]).sum();
            }
        }
        let ev = sym_eigenvalues(&mut m, n);
        for (a, b) in ev.iter().zip(lam) {
            assert!((a - b).abs() < 1e-10, "{ev:?}");
        }
    }

    #[test]
    fn assignment_matches_brute_force() {
        let mut rng = Rng::new(3);
        for n in 1..=6 {
            for _ in 0..20 {
                let c: Vec<f64> = (0..n * n).map(|_| rng.uniform()).collect();
                let a = assignment(&c, n);
                let got: f64 = (0..n).map(|i| c[i * n + a[i]]).sum();
                let mut perm: Vec<usize> = (0..n).collect();
                let mut best = f64::INFINITY;
                permute(&mut perm, 0, &mut |p| {
                    best = best.min((0..n).map(|i| c[i * n + p[i]]).sum());
                });
                assert!((got - best).abs() < 1e-12, "n = {n}");
                let mut s = a.clone();
                s.sort_unstable();
                assert_eq!(s, (0..n).collect::<Vec<_>>());
            }
        }
    }

    fn permute(p: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == p.len() {
            f(p);
            return;
        }
        for i in k..p.len() {
            p.swap(k, i);
            permute(p, k + 1, f);
            p.swap(k, i);
        }
    }
}
