/// The software version reported in the status birth message and `--version`.
public enum KilnTallyVersion {
    public static let current = "0.1.0"
}
