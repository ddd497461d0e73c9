//! The pause image: the process that owns an awsvpc task's network
//! namespace, which the task's containers join (as the ECS agent's
//! `~internal~ecs~pause` container does). No registry is needed: the agent
//! builds the image itself from a tiny static ELF program that sleeps in
//! `pause(2)` (or `ppoll(2)` on arm64) for ever.

use crate::runtime::{Runtime, RuntimeError};

pub const IMAGE: &str = "wharf/pause:1";
/// The name ECS gives the pause container; never a user's container name.
pub const CONTAINER_NAME: &str = "~internal~ecs~pause";

const BASE: u64 = 0x40_0000;
const HEADERS: usize = 64 + 56;

/// The machine code: a loop around a call that sleeps until a signal.
fn code(arch: &str) -> Option<(u16, Vec<u8>)> {
    match arch {
        // mov eax, 34 (pause); syscall; jmp back
        "x86_64" | "amd64" => Some((0x3e, vec![0xb8, 34, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7])),
        // mov x0..x3, #0; mov x8, #73 (ppoll); svc #0; b back
        "aarch64" | "arm64" => Some((
            0xb7,
            [
                0xd2800000u32,
                0xd2800001,
                0xd2800002,
                0xd2800003,
                0xd2800928,
                0xd4000001,
                0x17fffffa,
            ]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect(),
        )),
        _ => None,
    }
}

/// A minimal static ELF64 executable: one header, one loadable segment.
pub fn elf(arch: &str) -> Option<Vec<u8>> {
    let (machine, code) = code(arch)?;
    let size = (HEADERS + code.len()) as u64;
    let mut f = Vec::with_capacity(size as usize);
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // program headers
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        f.extend_from_slice(&half.to_le_bytes());
    }
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R + X
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&BASE.to_le_bytes());
    f.extend_from_slice(&BASE.to_le_bytes());
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(&code);
    Some(f)
}

/// A tar archive holding one executable file (ustar, as `docker import` reads).
pub fn tar_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put =
        |h: &mut [u8; 512], at: usize, s: &str| h[at..at + s.len()].copy_from_slice(s.as_bytes());
    put(&mut h, 0, name);
    put(&mut h, 100, "0000755\0");
    put(&mut h, 108, "0000000\0");
    put(&mut h, 116, "0000000\0");
    put(&mut h, 124, &format!("{:011o}\0", data.len()));
    put(&mut h, 136, "00000000000\0");
    put(&mut h, 148, "        ");
    h[156] = b'0';
    put(&mut h, 257, "ustar\0");
    put(&mut h, 263, "00");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    put(&mut h, 148, &format!("{sum:06o}\0 "));
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// Makes the pause image present, building it if it is not.
pub async fn ensure_image(rt: &dyn Runtime, arch: &str) -> Result<(), RuntimeError> {
    if rt.image_present(IMAGE).await? {
        return Ok(());
    }
    let program = elf(arch).ok_or_else(|| {
        RuntimeError::Other(format!(
            "awsvpc needs a pause program for {arch}; none is built in"
        ))
    })?;
    rt.import_image(IMAGE, tar_one("pause", &program), &["/pause"])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_and_tar_are_well_formed() {
        let e = elf("x86_64").unwrap();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(
            u64::from_le_bytes(e[24..32].try_into().unwrap()),
            BASE + 120
        );
        assert_eq!(e.len(), 120 + 9);
        assert!(elf("sparc").is_none());
        let t = tar_one("pause", &e);
        assert_eq!(t.len() % 512, 0);
        assert_eq!(&t[257..262], b"ustar");
        // The checksum counts the header with its checksum field as spaces.
        let mut h = t[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|b| *b as u32).sum::<u32>());
        assert_eq!(&t[512..512 + e.len()], &e[..]);
    }
}
