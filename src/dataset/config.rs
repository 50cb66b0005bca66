//! What a run asks of its dataset: the kind and its settings.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    OpenQa,
    LineByLine,
    Random,
    LongAlpaca,
    Custom,
    RandomVl,
    /// evalscope's speed_benchmark (`long`: speed_benchmark_long).
    SpeedBenchmark {
        long: bool,
    },
    /// Texts to embed (`embedding_dataset`).
    Embedding,
    /// Query and documents pairs (`rerank_dataset`).
    Rerank,
    /// Random texts to embed, `--min/--max-prompt-length` long (`random_embedding`).
    RandomEmbedding,
    /// A random query and `num_documents` random documents (`random_rerank`).
    RandomRerank,
    /// Flickr8k captions and images from a local copy.
    Flickr8k,
}

impl DatasetKind {
    /// The kind a `--dataset` name selects (evalscope's plugin names included).
    pub fn from_name(name: &str) -> Option<DatasetKind> {
        Some(match name {
            "openqa" => DatasetKind::OpenQa,
            "line_by_line" => DatasetKind::LineByLine,
            "random" => DatasetKind::Random,
            "longalpaca" => DatasetKind::LongAlpaca,
            "custom" => DatasetKind::Custom,
            "speed_benchmark" => DatasetKind::SpeedBenchmark { long: false },
            "speed_benchmark_long" => DatasetKind::SpeedBenchmark { long: true },
            "random_vl" => DatasetKind::RandomVl,
            "embedding_dataset" | "embedding" | "embed" | "embedding_batch" => {
                DatasetKind::Embedding
            }
            "rerank_dataset" | "rerank" => DatasetKind::Rerank,
            // evalscope's random_embedding_batch is random_embedding with batching,
            // which `batch_size` in --extra-args turns on for either name here.
            "random_embedding" | "random_embedding_batch" => DatasetKind::RandomEmbedding,
            "random_rerank" => DatasetKind::RandomRerank,
            "flickr8k" => DatasetKind::Flickr8k,
            _ => return None,
        })
    }

    /// The names `--dataset` accepts, for error messages.
    pub const NAMES: &'static str = "openqa, line_by_line, random, longalpaca, speed_benchmark, \
         random_vl, flickr8k, embedding_dataset, rerank_dataset, random_embedding, random_rerank \
         or custom";
}

/// `random_vl` images: size, PIL mode, count per request and the vision patch size.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub num: u32,
    pub patch_size: u32,
}

#[derive(Clone, Debug)]
pub struct DatasetConfig {
    pub kind: DatasetKind,
    pub name: String,
    pub path: Option<String>,
    /// `--prompt` text (already read from @file).
    pub prompt: Option<String>,
    pub min_prompt_length: u64,
    pub max_prompt_length: u64,
    pub prefix_length: u64,
    pub seed: u64,
    /// `--image-*` for random_vl.
    pub image: ImageSpec,
    /// `--query-template` (already read from @file) and the model it may name.
    pub query_template: Option<String>,
    pub model: String,
    /// `--tokenizer-path`: prompt lengths in tokens instead of characters.
    pub tokenizer: Option<std::sync::Arc<crate::tokenizer::Tokenizer>>,
    /// `batch_size` from `--extra-args`: inputs per embedding request (1 = a string).
    pub batch_size: usize,
    /// `num_documents` and `document_length_ratio` from `--extra-args`: the
    /// documents per `random_rerank` request and their length relative to the query.
    pub num_documents: usize,
    pub document_length_ratio: f64,
}
