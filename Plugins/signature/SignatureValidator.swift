import FerryCrypto
import FerryPluginKit

/// Validates a file against a detached signature by one of the configured trusted keys.
///
/// Settings:
/// - `keys` (required): comma-separated paths of public key files, each either PEM
///   (`-----BEGIN PUBLIC KEY-----`: Ed25519, ECDSA P-256/P-384, RSA ≥ 2048 bits) or a
///   minisign public key (`minisign.pub`, or just its base64 line), told apart by content.
///   Keys are named by their file name, which must be unique.
/// - `require` (`true`/`false`, default `false`): whether a file without a signature is invalid.
///
/// File properties (exactly one signature source):
/// - `signature`: base64 of a raw detached signature, checked with `signature_scheme`
///   (`ed25519`, `ecdsa-sha256`, `ecdsa-sha384`, `rsa-pkcs1-sha256`, `rsa-pss-sha256`;
///   by default the key's own: ed25519, ecdsa-sha256 for P-256, ecdsa-sha384 for P-384,
///   rsa-pkcs1-sha256 for RSA).
/// - `minisign_signature`: the text of a `.minisig` file, or base64 of it.
/// - `signature_file`: the index of another file of the job holding the signature: a
///   `.minisig`, or a raw signature in binary or base64.
/// - `signature_key` (optional): the file name (or configured path) of the one key to use;
///   by default every configured key that fits is tried, and one match is enough.
///
/// A file without any signature property is left alone unless `require = true`, and a file
/// that another file names as its `signature_file` is always left alone.
///
/// SHA-256-based schemes use the digest the host computed while the bytes streamed in, when
/// it has one; otherwise the file is streamed. Ed25519 and legacy minisign signatures map
/// the whole file into memory (the algorithm is one-shot).
final class SignatureValidator: FerryPlugin {
    /// One configured key.
    struct TrustedKey {
        /// The file name, used in messages and by `signature_key`.
        let name: String
        /// The path as configured.
        let path: String
        /// A PEM key, or the Ed25519 key of a minisign key.
        let key: PublicKey
        /// Set for minisign keys.
        let minisign: MinisignPublicKey?

        /// "release.pem (ECDSA P-256)" or "minisign.pub (minisign key E7620F1842B4E81F)".
        var summary: String {
            if let minisign { return "\(name) (minisign key \(minisign.keyID))" }
            return "\(name) (\(key.kind))"
        }
    }

    static let settingNames = ["keys", "require"]
    /// The largest signature file read through `signature_file`.
    static let signatureFileLimit = 64 * 1024

    let keys: [TrustedKey]
    let require: Bool

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first(where: { !Self.settingNames.contains($0) }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: \(Self.settingNames.joined(separator: ", ")))")
        }
        switch settings["require"].map(trimmed) ?? "false" {
        case "true": require = true
        case "false": require = false
        case let other: throw PluginFailure("require must be true or false, got '\(other)'")
        }
        let paths = (settings["keys"] ?? "").split(separator: ",").map { trimmed(String($0)) }.filter { !$0.isEmpty }
        guard !paths.isEmpty else {
            throw PluginFailure("the keys setting is required: a comma-separated list of public key files (PEM or minisign)")
        }
        var loaded: [TrustedKey] = []
        for path in paths {
            let key = try Self.loadKey(atPath: path)
            if let clash = loaded.first(where: { $0.name == key.name }) {
                throw PluginFailure("keys: \(clash.path) and \(path) have the same file name \(key.name); signature_key names keys by file name, so rename one")
            }
            loaded.append(key)
        }
        keys = loaded
        host.log(.info, "trusting \(loaded.count) key(s): \(loaded.map(\.summary).joined(separator: ", "))")
    }

    /// Loads a PEM or minisign public key, telling them apart by content.
    static func loadKey(atPath path: String) throws(PluginFailure) -> TrustedKey {
        let name = fileName(path)
        do throws(CryptoError) {
            let bytes = try contentsOfSmallFile(atPath: path, limit: 1 << 20)
            let text = String(decoding: bytes, as: UTF8.self)
            if text.contains("-----BEGIN") {
                return TrustedKey(name: name, path: path, key: try PublicKey(pem: text, name: name), minisign: nil)
            }
            let minisign = try MinisignPublicKey(text: text, name: name)
            return TrustedKey(name: name, path: path, key: minisign.key, minisign: minisign)
        } catch {
            throw PluginFailure("keys: cannot load \(path): \(withoutPrefix(error.message, "\(name): "))")
        }
    }

    // MARK: - Validation

    func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome {
        let sources = ["signature", "minisign_signature", "signature_file"].filter { file.property($0) != nil }
        guard let source = sources.first else {
            if require && !isSignatureFileOfAnother(job: job, file: file) {
                file.setValidationState(valid: false, reason: "no signature, minisign_signature or signature_file property (require = true)")
            }
            return .ok
        }
        guard sources.count == 1 else {
            return invalid(file, "several signature properties (\(sources.joined(separator: ", "))); give exactly one")
        }

        var chosenKey: TrustedKey?
        if let wanted = file.property("signature_key").map(trimmed) {
            guard let key = keys.first(where: { $0.name == wanted || $0.path == wanted }) else {
                return invalid(file, "unknown key: signature_key '\(wanted)' is not a configured key (configured: \(keys.map(\.name).joined(separator: ", ")))")
            }
            chosenKey = key
        }

        let signature: DetachedSignature
        switch source {
        case "signature":
            let text = file.property("signature") ?? ""
            guard let raw = bytes(fromBase64: text), !raw.isEmpty else {
                return invalid(file, "malformed signature: the signature property is not base64 (\(preview(text)))")
            }
            signature = .raw(raw)
        case "minisign_signature":
            do throws(CryptoError) {
                signature = .minisign(try MinisignSignature(textOrBase64: file.property("minisign_signature") ?? ""))
            } catch {
                return invalid(file, error.message)
            }
        default:
            switch readSignatureFile(job: job, file: file) {
            case .ready(let content): signature = content
            case .notYet: return .retryLater
            case .invalid(let reason): return invalid(file, reason)
            }
        }

        switch signature {
        case .raw(let raw):
            return checkRaw(raw, file: file, only: chosenKey)
        case .minisign(let parsed):
            if file.property("signature_scheme") != nil {
                return invalid(file, "wrong scheme: signature_scheme does not apply to a minisign signature (its algorithm is in the signature)")
            }
            return checkMinisign(parsed, file: file, only: chosenKey)
        }
    }

    /// A raw detached signature: every fitting key (or the chosen one) is tried.
    private func checkRaw(_ signature: [UInt8], file: PluginFile, only chosen: TrustedKey?) -> PluginOutcome {
        var scheme: SignatureScheme?
        if let name = file.property("signature_scheme").map(trimmed) {
            guard let known = SignatureScheme(rawValue: name) else {
                return invalid(file, "wrong scheme: unknown signature_scheme '\(name)' (known: \(SignatureScheme.names))")
            }
            scheme = known
        }
        let candidates: [(key: TrustedKey, scheme: SignatureScheme)]
        if let chosen {
            let use = scheme ?? chosen.key.kind.defaultScheme
            do throws(CryptoError) {
                try chosen.key.checkFits(use)
            } catch {
                return invalid(file, "wrong scheme: \(error.message)")
            }
            candidates = [(chosen, use)]
        } else {
            candidates = keys.compactMap { trusted in
                let use = scheme ?? trusted.key.kind.defaultScheme
                return trusted.key.fits(use) ? (trusted, use) : nil
            }
            if candidates.isEmpty, let scheme {
                return invalid(file, "unknown key: no configured key can check a \(scheme) signature (configured: \(keys.map(\.summary).joined(separator: ", ")))")
            }
        }

        var mismatched: [String] = []
        var unfit: [(name: String, problem: String)] = []
        for (trusted, use) in candidates {
            do throws(CryptoError) {
                try trusted.key.checkEncoding(of: signature, scheme: use)
            } catch {
                unfit.append((trusted.name, error.message))
                continue
            }
            let matches: Bool
            do throws(CryptoError) {
                // The digest the host computed while the bytes streamed in spares reading the file again.
                if let algorithm = use.digestAlgorithm, let streamed = file.digest(algorithm) {
                    matches = try verify(digest: streamed, signature: signature, key: trusted.key, scheme: use)
                } else {
                    matches = try verify(fileAtPath: file.temporaryPath, signature: signature, key: trusted.key, scheme: use)
                }
            } catch {
                return .failed("cannot check the signature of \(file.temporaryPath): \(error.message)")
            }
            if matches {
                file.setValidationState(valid: true, reason: "\(use) signature by \(trusted.name)")
                return .ok
            }
            mismatched.append("\(trusted.name) (\(use))")
        }
        if !mismatched.isEmpty {
            var reason = "signature does not match: checked with \(mismatched.joined(separator: ", "))"
            if !unfit.isEmpty {
                reason += "; \(unfit.map(\.name).joined(separator: ", ")) cannot have made a \(signature.count)-byte signature of this form"
            }
            return invalid(file, reason)
        }
        if unfit.count == 1 { return invalid(file, unfit[0].problem) }
        let details = unfit.map { "\($0.name): \(withoutPrefix($0.problem, "malformed signature: "))" }
        return invalid(file, "malformed signature, or made by a key that is not configured: it fits none of the keys (\(details.joined(separator: "; ")))")
    }

    /// A minisign signature: the key is picked by the key id in the signature.
    private func checkMinisign(_ signature: MinisignSignature, file: PluginFile, only chosen: TrustedKey?) -> PluginOutcome {
        let pool = chosen.map { [$0] } ?? keys
        if let chosen, chosen.minisign == nil {
            return invalid(file, "wrong scheme: key \(chosen.name) (\(chosen.key.kind), PEM) is not a minisign key")
        }
        guard let trusted = pool.first(where: { $0.minisign?.keyID == signature.keyID }), let minisign = trusted.minisign else {
            let known = pool.compactMap { trusted in trusted.minisign.map { "\(trusted.name) (\($0.keyID))" } }
            return invalid(file, "unknown key: the minisign signature was made by key ID \(signature.keyID), which is not trusted (configured minisign keys: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        let verdict: MinisignVerdict
        do throws(CryptoError) {
            verdict = try minisign.verify(fileAtPath: file.temporaryPath, signature: signature)
        } catch {
            return .failed("cannot check the minisign signature of \(file.temporaryPath): \(error.message)")
        }
        let algorithm = signature.algorithm == .prehashed ? "minisign" : "minisign (legacy Ed)"
        switch verdict {
        case .valid(let comment):
            file.setValidationState(valid: true, reason: "\(algorithm) signature by \(trusted.name) (key ID \(minisign.keyID), trusted comment: \(preview(comment)))")
            return .ok
        case .keyIDMismatch, .signatureMismatch:
            return invalid(file, "signature does not match: the \(algorithm) signature by \(trusted.name) (key ID \(minisign.keyID)) does not match the file")
        case .trustedCommentMismatch:
            return invalid(file, "bad global signature: the \(algorithm) signature by \(trusted.name) matches the file, but its trusted comment was altered")
        }
    }

    // MARK: - Signature sources

    /// Where a `signature_file` stands.
    enum SignatureFileState {
        /// Read and recognised.
        case ready(DetachedSignature)
        /// Its bytes are not all there yet: the validator asks to be called again.
        case notYet
        /// It cannot hold a signature: the file is invalid for this reason.
        case invalid(String)
    }

    /// Reads the signature from the job's file named by `signature_file`.
    private func readSignatureFile(job: PluginJob, file: PluginFile) -> SignatureFileState {
        let value = trimmed(file.property("signature_file") ?? "")
        guard let index = Int(value), index >= 0, value.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return .invalid("malformed signature: signature_file must be the index of a file of the job, got '\(preview(value))'")
        }
        guard index != file.index else { return .invalid("malformed signature: signature_file names the file itself") }
        guard let holder = job.file(index) else {
            return .invalid("malformed signature: signature_file is \(index) but the job has \(job.fileCount) file(s)")
        }
        guard let total = holder.bytesTotal, holder.bytesTransferred >= total else { return .notYet }
        guard total <= UInt64(Self.signatureFileLimit) else {
            return .invalid("malformed signature: signature file \(index) is \(total) bytes, too large for a signature (limit \(Self.signatureFileLimit))")
        }
        var content: [UInt8]?
        var problems: [String] = []
        for path in [holder.temporaryPath, holder.localPath] where !path.isEmpty {
            do throws(CryptoError) {
                let bytes = try contentsOfSmallFile(atPath: path, limit: Self.signatureFileLimit)
                if bytes.count >= Int(total) {
                    content = Array(bytes.prefix(Int(total)))
                    break
                }
                problems.append("\(path) holds \(bytes.count) of \(total) bytes")
            } catch {
                problems.append(error.message)
            }
        }
        guard let content else {
            // The bytes are said to be complete but are not on disk (yet): ask again later.
            job.log(.debug, "signature file \(index) not readable yet: \(problems.joined(separator: "; "))")
            return .notYet
        }
        do throws(CryptoError) {
            return .ready(try DetachedSignature(fileContent: content))
        } catch {
            return .invalid("signature file \(index): \(error.message)")
        }
    }

    /// True when another file of the job names this one as its `signature_file`.
    private func isSignatureFileOfAnother(job: PluginJob, file: PluginFile) -> Bool {
        let own = file.index
        for index in 0..<job.fileCount where index != own {
            if let other = job.file(index), other.property("signature_file").map(trimmed) == String(own) { return true }
        }
        return false
    }

    private func invalid(_ file: PluginFile, _ reason: String) -> PluginOutcome {
        file.setValidationState(valid: false, reason: reason)
        return .ok
    }
}

/// Cuts long untrusted text for messages.
private func preview(_ text: String) -> String {
    text.count > 80 ? String(text.prefix(80)) + "…" : text
}

private func withoutPrefix(_ text: String, _ prefix: String) -> String {
    text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
}

private func trimmed(_ text: String) -> String {
    var slice = Substring(text)
    while let first = slice.first, first.isWhitespace { slice.removeFirst() }
    while let last = slice.last, last.isWhitespace { slice.removeLast() }
    return String(slice)
}

private func fileName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    let name = path[path.index(after: slash)...]
    return name.isEmpty ? path : String(name)
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "signature", version: "1.0.0", roles: .validator, type: SignatureValidator.self)
}
