//! The tensor readers of `load_tensor`: `.npy`, `.csv` and `.safetensors` through the file
//! reader, with and without a tensor name or CSV column. The first byte picks the format
//! and the name; the rest is the file. What loads must survive a save and a reload as `.npy`
//! with the same shape and the same bits.

const EXTS: [&str; 3] = ["npy", "csv", "safetensors"];
const NAMES: [Option<&str>; 4] = [None, Some("x"), Some("0"), Some("b")];

fn main() {
    let dir = tokit_fuzz::scratch();
    let back = dir.join("back.npy");
    afl::fuzz!(|data: &[u8]| {
        let Some((&sel, file)) = data.split_first() else {
            return;
        };
        let ext = EXTS[sel as usize % 3];
        let name = NAMES[(sel as usize / 3) % 4];
        let path = tokit_fuzz::scratch_file(&format!("t.{ext}"), file);
        let Ok(t) = tokit_model::tensor_io::load(&path, name) else {
            return;
        };
        assert_eq!(t.shape().iter().product::<usize>(), t.data().len());
        tokit_model::tensor_io::save(&back, &[("", &t)]).expect("saving a loaded tensor");
        let r = tokit_model::tensor_io::load(&back, None).expect("reloading a saved tensor");
        assert_eq!(r.shape(), t.shape());
        let bits = |d: &[f32]| d.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(r.data()), bits(t.data()));
    });
}
