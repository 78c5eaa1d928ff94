//! FRU inventory of a VM (Platform Management FRU Information Storage
//! Definition 1.0): chassis, board and product areas that carry the VM's
//! name and UUID, so `ipmitool fru print` identifies the machine.

/// Type/length byte: 8-bit ASCII (0b11) and length, at most 63 bytes.
fn field(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(63)];
    out.push(0xC0 | b.len() as u8);
    out.extend_from_slice(b);
}

/// Close an area: end marker, pad to a multiple of 8 with the checksum last,
/// length byte (in multiples of 8) at offset 1.
fn finish(mut a: Vec<u8>) -> Vec<u8> {
    a.push(0xC1); // no more fields
    while (a.len() + 1) & 7 != 0 {
        a.push(0);
    }
    a[1] = ((a.len() + 1) / 8) as u8;
    let sum = a.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    a.push(sum.wrapping_neg());
    a
}

/// The FRU image of a VM named `name` with UUID text `uuid`.
pub fn image(name: &str, uuid: &str, version: &str) -> Vec<u8> {
    let mut chassis = vec![0x01, 0, 0x01]; // version, length, type Other
    field(&mut chassis, "hvsim-vm");
    field(&mut chassis, uuid);
    let chassis = finish(chassis);

    // Board: version, length, language English, manufacturing date unknown.
    let mut board = vec![0x01, 0, 0x00, 0, 0, 0];
    field(&mut board, "hvsim");
    field(&mut board, name);
    field(&mut board, uuid);
    field(&mut board, "hvsim-vm");
    field(&mut board, ""); // FRU file ID
    let board = finish(board);

    let mut product = vec![0x01, 0, 0x00];
    field(&mut product, "hvsim");
    field(&mut product, name);
    field(&mut product, "hvsim virtual machine");
    field(&mut product, version);
    field(&mut product, uuid);
    field(&mut product, name); // asset tag
    field(&mut product, ""); // FRU file ID
    let product = finish(product);

    let chassis_off = 1u8; // in multiples of 8, after the common header
    let board_off = chassis_off + (chassis.len() / 8) as u8;
    let product_off = board_off + (board.len() / 8) as u8;
    let mut header = vec![0x01, 0, chassis_off, board_off, product_off, 0, 0];
    let sum = header.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    header.push(sum.wrapping_neg());
    let mut img = header;
    img.extend_from_slice(&chassis);
    img.extend_from_slice(&board);
    img.extend_from_slice(&product);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_checksum_to_zero() {
        let img = image("vm0", "564d1234-5678-9abc-def0-123456789abc", "0.1.0");
        let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        assert_eq!(sum(&img[..8]), 0);
        for off in [img[2], img[3], img[4]] {
            let start = off as usize * 8;
            let len = img[start + 1] as usize * 8;
            assert_eq!(sum(&img[start..start + len]), 0);
        }
    }
}
