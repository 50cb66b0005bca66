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
    /// kontext-bench instructions and images from a local copy.
    KontextBench,
    /// MMMU validation questions with 2–7 images, from a local snapshot.
    MmmuMultiImage,
    /// OpenDecisions as complete System One request bodies, from a local copy.
    OpenDecisions,
    /// `share_gpt_zh` / `share_gpt_en`: a whole conversation as one request.
    ShareGpt {
        zh: bool,
    },
    /// Conversations sent turn by turn (`--multi-turn`).
    MultiTurn(MultiTurnKind),
    /// Mooncake-style trace: timestamps, lengths and shared `hash_ids` blocks.
    MooncakeTrace,
    /// evalscope's `workload_trace`: recorded bodies replayed at their timestamps.
    WorkloadTrace,
}

impl DatasetKind {
    /// Every `--dataset` name and the kind it selects: what `--dataset` accepts and
    /// what `--help`, the shell completions and the errors list.
    pub const ALL: &'static [(&'static str, DatasetKind)] = &[
        ("openqa", DatasetKind::OpenQa),
        ("line_by_line", DatasetKind::LineByLine),
        ("random", DatasetKind::Random),
        ("longalpaca", DatasetKind::LongAlpaca),
        (
            "speed_benchmark",
            DatasetKind::SpeedBenchmark { long: false },
        ),
        (
            "speed_benchmark_long",
            DatasetKind::SpeedBenchmark { long: true },
        ),
        ("random_vl", DatasetKind::RandomVl),
        ("flickr8k", DatasetKind::Flickr8k),
        ("kontext_bench", DatasetKind::KontextBench),
        ("mmmu_multi_image", DatasetKind::MmmuMultiImage),
        ("open_decisions", DatasetKind::OpenDecisions),
        ("embedding_dataset", DatasetKind::Embedding),
        ("rerank_dataset", DatasetKind::Rerank),
        ("random_embedding", DatasetKind::RandomEmbedding),
        ("random_rerank", DatasetKind::RandomRerank),
        ("custom", DatasetKind::Custom),
        ("share_gpt_zh", DatasetKind::ShareGpt { zh: true }),
        ("share_gpt_en", DatasetKind::ShareGpt { zh: false }),
        (
            "random_multi_turn",
            DatasetKind::MultiTurn(MultiTurnKind::Random),
        ),
        (
            "share_gpt_zh_multi_turn",
            DatasetKind::MultiTurn(MultiTurnKind::ShareGpt { zh: true }),
        ),
        (
            "share_gpt_en_multi_turn",
            DatasetKind::MultiTurn(MultiTurnKind::ShareGpt { zh: false }),
        ),
        (
            "custom_multi_turn",
            DatasetKind::MultiTurn(MultiTurnKind::Custom),
        ),
        ("swe_smith", DatasetKind::MultiTurn(MultiTurnKind::SweSmith)),
        (
            "trie_agentic_coding",
            DatasetKind::MultiTurn(MultiTurnKind::Trie(TrieSet::AgenticCoding)),
        ),
        (
            "trie_code_qa",
            DatasetKind::MultiTurn(MultiTurnKind::Trie(TrieSet::CodeQa)),
        ),
        (
            "trie_office_work",
            DatasetKind::MultiTurn(MultiTurnKind::Trie(TrieSet::OfficeWork)),
        ),
        ("mooncake_trace", DatasetKind::MooncakeTrace),
        ("workload_trace", DatasetKind::WorkloadTrace),
    ];

    /// evalscope's other plugin names for the same kinds, accepted but not listed.
    /// random_embedding_batch is random_embedding with batching, which `batch_size`
    /// in --extra-args turns on for either name here.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("embedding", "embedding_dataset"),
        ("embed", "embedding_dataset"),
        ("embedding_batch", "embedding_dataset"),
        ("rerank", "rerank_dataset"),
        ("random_embedding_batch", "random_embedding"),
    ];

    /// The kind a `--dataset` name (or alias) selects.
    pub fn from_name(name: &str) -> Option<DatasetKind> {
        let name = Self::ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, to)| *to);
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// The listed names, for error messages.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the arrival times come from the dataset (trace replay).
    pub fn is_trace(self) -> bool {
        matches!(
            self,
            DatasetKind::MooncakeTrace | DatasetKind::WorkloadTrace
        )
    }
}

/// The multi-turn datasets and where each reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiTurnKind {
    Random,
    ShareGpt {
        zh: bool,
    },
    Custom,
    /// A trie agentic trace set (evalscope 1.14.1's `trie_*`).
    Trie(TrieSet),
    /// SWE-smith agent conversations from a pre-built JSON file.
    SweSmith,
}

/// The three trie workloads evalscope re-hosts on ModelScope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrieSet {
    AgenticCoding,
    CodeQa,
    OfficeWork,
}

impl TrieSet {
    /// The file of ModelScope's `evalscope/trie-workloads` this set is.
    pub fn file(self) -> &'static str {
        match self {
            TrieSet::AgenticCoding => "agentic_coding_8k.jsonl",
            TrieSet::CodeQa => "code_qa_8k.jsonl",
            TrieSet::OfficeWork => "office_work_8k.jsonl",
        }
    }
}

/// The turn bounds of a multi-turn run (`--min-turns`, `--max-turns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnBounds {
    pub min: u64,
    pub max: Option<u64>,
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
    /// `--prefix-count`: distinct shared prefixes, handed out round-robin (random).
    pub prefix_count: u64,
    /// `--dataset-offset`: moves the random texts (evalscope's vocabulary offset).
    pub dataset_offset: u64,
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
    /// `--tokenize-prompt`: `random` builds bare texts of the target length (no chat
    /// template subtracted): they are sent as exactly those token ids.
    pub tokenize: bool,
    /// `--dataset-args` as checked for this dataset.
    pub args: DatasetArgs,
    /// Threads building random texts (`--num-workers`: 0 automatic, 1 serial).
    pub num_workers: usize,
    /// `--data-source`: the hub an error message points to (perfscope never downloads).
    pub hub: Hub,
}

/// `--data-source`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hub {
    #[default]
    ModelScope,
    HuggingFace,
    Local,
}

impl Hub {
    /// Where to download a dataset from, for an error message: the ModelScope and
    /// Hugging Face ids evalscope 1.14 uses.
    pub fn download_hint(self, modelscope: &str, huggingface: &str) -> String {
        match self {
            Hub::ModelScope => format!("download it from ModelScope ({modelscope})"),
            Hub::HuggingFace => format!("download it from Hugging Face ({huggingface})"),
            Hub::Local => "--data-source local reads only --dataset-path".to_string(),
        }
    }
}

/// `--input-len-mode` of `--dataset-args`: what happens to prompts shorter than
/// `target_input_len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputLenMode {
    /// Keep them (padded with `prefix_file` text when one is given).
    #[default]
    Cap,
    /// Drop them.
    Drop,
}

/// `--dataset-args` (and the folded `--multi-turn-args`), per dataset, unknown keys
/// rejected as evalscope's pydantic schemas do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetArgs {
    /// Text datasets: fit every prompt to this many tokens (needs --tokenizer-path).
    pub target_input_len: Option<u64>,
    pub input_len_mode: InputLenMode,
    /// Text datasets: a corpus whose tokens pad short prompts up to the target.
    pub prefix_file: Option<String>,
    /// Where the padding goes: a leading system message (`system`) or the start of
    /// the first message (`user`).
    pub prefix_system: bool,
    /// workload_trace: replay speed (2.0 = twice as fast).
    pub speed: Option<f64>,
    /// workload_trace: replace every body's `model`.
    pub model_override: Option<String>,
    /// workload_trace: replace a body's `model` by this table.
    pub model_mapping: serde_json::Map<String, serde_json::Value>,
    /// workload_trace: set `max_tokens` to the recorded completion length (with
    /// `ignore_eos`).
    pub match_output_length: bool,
}
