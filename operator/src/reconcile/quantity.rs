//! Resource quantities compared by amount: the API server stores a quantity
//! in canonical form (`0.5` CPU as `500m`, `1024Mi` as `1Gi`), so comparing
//! the strings would see drift in every child whose spec was written
//! otherwise and re-apply it on every reconcile.

use kube_quantity::ParsedQuantity;

/// Whether the values under `key` are quantities, in the children the
/// operator builds: a container's or a PVC's `resources.requests` and
/// `resources.limits` (maps of quantities), `emptyDir.sizeLimit`.
pub(crate) fn holds_quantities(key: &str) -> bool {
    matches!(key, "requests" | "limits" | "sizeLimit")
}

/// Whether two quantities are the same amount (to one part in 10^12, far
/// finer than any request or size differs by); a string that is not a
/// quantity only equals itself.
///
/// The amounts are compared as numbers because `ParsedQuantity`'s own
/// equality converts between binary and decimal suffixes through `f32` and
/// finds `128Mi` unequal to `134217728`.
pub(crate) fn same_amount(a: &str, b: &str) -> bool {
    a == b
        || match (amount(a), amount(b)) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        }
}

/// The amount a quantity stands for (bytes, cores, ...).
fn amount(quantity: &str) -> Option<f64> {
    ParsedQuantity::try_from(quantity).ok()?.to_bytes_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        // (written in the spec, as the API server may store it, same amount?)
        let table = [
            ("0.5", "500m", true),
            ("1024Mi", "1Gi", true),
            ("1536Mi", "1.5Gi", true),
            ("2", "2000m", true),
            ("100m", "0.1", true),
            ("1000", "1k", true),
            ("1e3", "1k", true),
            ("134217728", "128Mi", true),
            ("64Mi", "64Mi", true),
            ("1Gi", "1G", false),
            ("1k", "1Ki", false),
            ("500m", "501m", false),
            ("1", "2", false),
            ("64Mi", "65Mi", false),
            ("lots", "lots", true),
            ("lots", "1", false),
            ("", "0", false),
        ];
        for (a, b, same) in table {
            assert_eq!(same_amount(a, b), same, "{a} vs {b}");
            assert_eq!(same_amount(b, a), same, "{b} vs {a}");
        }
    }
}
