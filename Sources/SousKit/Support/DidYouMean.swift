/// Suggests the closest known word for a misspelled one (Levenshtein distance, at most a third of its length).
/// The distance is at least the difference in length, so a candidate too short or too long is skipped without
/// computing it (a hostile megabyte-long key would otherwise cost length × length per candidate).
public func didYouMean(_ word: String, in candidates: [String]) -> String? {
    let limit = max(2, word.count / 3)
    let length = word.unicodeScalars.count
    var best: (String, Int)?
    for candidate in candidates where abs(candidate.unicodeScalars.count - length) <= limit {
        let d = editDistance(word.lowercased(), candidate.lowercased())
        if d <= limit, d < (best?.1 ?? Int.max) { best = (candidate, d) }
    }
    return best?.0
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
