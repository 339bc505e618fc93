//! Receipts: what a consumer hands back to ack a delivery. A receipt names the message's
//! partition, its log offset and the lease it was delivered under:
//! `<partition>/<offset>/<epoch>.<serial>`. The gateway only reads the partition (to route the
//! ack); the partition's leader checks the rest.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub partition: u32,
    pub offset: u64,
    pub lease: String,
}

impl Receipt {
    pub fn parse(text: &str) -> Option<Receipt> {
        let mut parts = text.splitn(3, '/');
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let lease = parts.next()?;
        let (epoch, serial) = lease.split_once('.')?;
        epoch.parse::<u64>().ok()?;
        serial.parse::<u64>().ok()?;
        Some(Receipt {
            partition,
            offset,
            lease: lease.to_owned(),
        })
    }
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.partition, self.offset, self.lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_reject_junk() {
        let receipt = Receipt {
            partition: 3,
            offset: 17,
            lease: "2.9".into(),
        };
        assert_eq!(Receipt::parse(&receipt.to_string()), Some(receipt));
        for junk in ["", "3", "3/17", "3/x/2.9", "3/17/29", "a/1/1.1", "3/17/2.x"] {
            assert_eq!(Receipt::parse(junk), None, "{junk}");
        }
    }
}
